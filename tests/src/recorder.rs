//! A recording TCP proxy: clients connect to it instead of the broker, it forwards both
//! directions unchanged and keeps a copy of every request frame a client sent. Used to
//! capture the exact bytes real clients produce (crates/protocol/tests/data/client_frames).
//!
//! Metadata responses name the broker's own address, so a client that follows them
//! would bypass the proxy: start the broker with `--advertise <proxy addr>` (see
//! [`Recorder::reserve`]).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use bytes::Bytes;

/// A listening proxy in front of one broker address.
pub struct Recorder {
    pub addr: String,
    listener: Option<TcpListener>,
    frames: Arc<Mutex<Vec<Bytes>>>,
}

impl Recorder {
    /// Binds a free port without forwarding yet, so the broker can be told to
    /// advertise it; call [`Recorder::forward_to`] once the broker runs.
    pub fn reserve() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recorder");
        let addr = listener.local_addr().unwrap().to_string();
        Recorder {
            addr,
            listener: Some(listener),
            frames: Arc::default(),
        }
    }

    /// Starts accepting clients and forwarding each connection to `upstream`.
    pub fn forward_to(&mut self, upstream: &str) {
        let listener = self.listener.take().expect("forward_to called once");
        let frames = self.frames.clone();
        let upstream = upstream.to_string();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    break;
                };
                let frames = frames.clone();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // Requests: split into frames and recorded on the way through.
                thread::spawn(move || pump_requests(client, server, &frames));
                // Responses: copied as they come.
                thread::spawn(move || pump(s2, c2));
            }
        });
    }

    /// Every request frame (size prefix included) recorded so far, in arrival order
    /// per connection.
    pub fn frames(&self) -> Vec<Bytes> {
        self.frames.lock().unwrap().clone()
    }

    /// Forgets what was recorded so far.
    pub fn clear(&self) {
        self.frames.lock().unwrap().clear();
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn pump_requests(mut from: TcpStream, mut to: TcpStream, frames: &Mutex<Vec<Bytes>>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                while pending.len() >= 4 {
                    let size = i32::from_be_bytes(pending[..4].try_into().unwrap());
                    let Ok(size) = usize::try_from(size) else {
                        break;
                    };
                    if pending.len() < 4 + size {
                        break;
                    }
                    let frame: Vec<u8> = pending.drain(..4 + size).collect();
                    frames.lock().unwrap().push(Bytes::from(frame.clone()));
                    if to.write_all(&frame).is_err() {
                        return;
                    }
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
