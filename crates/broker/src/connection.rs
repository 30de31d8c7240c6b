//! One client connection: reads length-prefixed frames, handles requests one at a time
//! in arrival order (as Kafka does, which keeps a producer's pipelined batches in
//! order), and hands responses to a writer task so reading the next request overlaps
//! with writing the previous response.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sluice_protocol::frame::take_frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit};

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::router;

const READ_CHUNK: usize = 64 * 1024;
/// How long a closing connection waits for its queued responses to be written.
const WRITER_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn serve(
    broker: Arc<Broker>,
    socket: TcpStream,
    mut stop: broadcast::Receiver<()>,
) -> Result<(), BrokerError> {
    let (mut rd, wr) = socket.into_split();
    // The bound is the number of responses that may wait for the socket; when it is
    // full the connection stops reading, which pushes back on a pipelining client.
    let (tx, rx) = mpsc::channel::<Bytes>(broker.config.max_inflight_requests.max(1));
    let writer = tokio::spawn(write_loop(wr, rx));
    let max_frame = broker.config.socket_request_max_bytes;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // Memory reserved from the broker-wide budget for the large frame being read.
    let mut frame_permit: Option<OwnedSemaphorePermit> = None;
    let result = async {
        loop {
            while let Some(frame) = take_frame(&mut buf, max_frame)? {
                let _held = frame_permit.take();
                // A parked fetch must not hold up shutdown; no handler is cancelled in
                // the middle of an append because appends never await.
                let response = tokio::select! {
                    r = router::handle(&broker, frame) => r?,
                    _ = stop.recv() => return Ok(()),
                };
                if let Some(response) = response {
                    // A client that stops reading fills the queue; shutdown must not
                    // wait for it.
                    tokio::select! {
                        sent = tx.send(response) => if sent.is_err() {
                            return Ok(()); // writer gone: the peer closed
                        },
                        _ = stop.recv() => return Ok(()),
                    }
                }
            }
            let pending = pending_frame_len(&buf);
            if let (Some(n), None) = (pending, &frame_permit) {
                if n > READ_CHUNK {
                    // queued.max.request.bytes: large frames wait for room in the
                    // broker-wide budget before their bytes are buffered.
                    let budget = broker.request_memory.clone();
                    let kib = u32::try_from(n.div_ceil(1024))
                        .unwrap_or(u32::MAX)
                        .min(broker.request_memory_kib);
                    tokio::select! {
                        permit = budget.acquire_many_owned(kib) => match permit {
                            Ok(p) => frame_permit = Some(p),
                            Err(_) => return Ok(()), // budget closed: shutting down
                        },
                        _ = stop.recv() => return Ok(()),
                    }
                }
            }
            // Reserve what the frame in progress still needs (bounded by the frame
            // limit, already checked by take_frame) so large frames read in few calls.
            let want = pending.map_or(READ_CHUNK, |n| {
                n.saturating_sub(buf.len())
                    .clamp(READ_CHUNK, 8 * READ_CHUNK)
            });
            buf.reserve(want);
            tokio::select! {
                n = rd.read_buf(&mut buf) => {
                    if n? == 0 {
                        return Ok(());
                    }
                }
                _ = stop.recv() => return Ok(()),
            }
        }
    }
    .await;
    drop(tx);
    // Let queued responses drain, but a peer that never reads cannot hold the task.
    let mut writer = writer;
    if tokio::time::timeout(WRITER_DRAIN, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    result
}

/// Total bytes (prefix included) of the frame at the head of `buf`, once its prefix is in.
fn pending_frame_len(buf: &BytesMut) -> Option<usize> {
    let prefix: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    usize::try_from(i32::from_be_bytes(prefix))
        .ok()
        .map(|n| n + 4)
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(first) = rx.recv().await {
        if wr.write_all(&first).await.is_err() {
            return;
        }
        // Drain whatever else is ready without another wakeup per response.
        while let Ok(next) = rx.try_recv() {
            if wr.write_all(&next).await.is_err() {
                return;
            }
        }
    }
    let _ = wr.shutdown().await;
}
