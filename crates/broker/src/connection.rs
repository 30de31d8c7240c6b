//! One client connection: reads length-prefixed frames, handles requests one at a time
//! in arrival order (as Kafka does, which keeps a producer's pipelined batches in
//! order), and hands responses to a writer task so reading the next request overlaps
//! with writing the previous response. A response made of segments (Fetch, whose
//! record batches are shared with storage reads) goes out with vectored writes.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sluice_protocol::frame::{frame_size, take_frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::debug;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::router::{self, ConnectionInfo, Response};
use crate::session::{Session, Step};

const READ_CHUNK: usize = 64 * 1024;
/// How long a closing connection waits for its queued responses to be written.
const WRITER_DRAIN: Duration = Duration::from_secs(5);
/// Response bytes a connection may have queued for its writer. Kafka sends one response
/// at a time per connection; a queue lets pipelined producers overlap, and this bound
/// keeps a client that pipelines Fetches without reading from holding gigabytes.
const QUEUED_RESPONSE_KIB: u32 = 64 * 1024;
/// A frame that holds part of the broker-wide request budget must arrive within this;
/// a client that sends a large length prefix and stalls must not pin the budget.
const FRAME_DEADLINE: Duration = Duration::from_secs(30);

/// A response waiting for the socket, with its share of the queue's byte budget.
struct Queued {
    response: Response,
    _budget: Option<OwnedSemaphorePermit>,
}

/// Most buffers handed to one vectored write. Linux takes up to 1024 (`IOV_MAX`); a
/// Fetch response has about two segments per partition with large records, and what
/// does not fit goes in the next call.
const MAX_IOV: usize = 64;

/// Serves one connection accepted on listener `listener` (an index into
/// `Broker::listeners`), reading from `rd` and writing to `wr` (a TCP socket's halves,
/// or a TLS stream's). `session` has done what the listener's security protocol needs
/// before the first frame (a TLS handshake); SASL happens here, frame by frame.
pub async fn serve<R, W>(
    broker: Arc<Broker>,
    (mut rd, wr): (R, W),
    peer: SocketAddr,
    listener: usize,
    mut session: Session,
    mut stop: broadcast::Receiver<()>,
) -> Result<(), BrokerError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut conn = ConnectionInfo {
        // Kafka reports a member's host as `InetAddress.toString` does: "/<ip>".
        client_host: format!("/{}", peer.ip()),
        peer_ip: peer.ip(),
        listener,
        principal: Arc::new(session.principal().clone()),
    };
    // The bound is the number of responses that may wait for the socket; when it is
    // full the connection stops reading, which pushes back on a pipelining client.
    let (tx, rx) = mpsc::channel::<Queued>(broker.config.max_inflight_requests.max(1));
    let queue_budget = Arc::new(Semaphore::new(QUEUED_RESPONSE_KIB as usize));
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms.max(1));
    let auth_deadline =
        Instant::now() + Duration::from_millis(broker.config.security.authentication_timeout_ms);
    let writer = tokio::spawn(write_loop(wr, rx));
    let max_frame = broker.config.socket_request_max_bytes;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // Memory reserved from the broker-wide budget for the large frame being read.
    let mut frame_permit: Option<OwnedSemaphorePermit> = None;
    let result = async {
        loop {
            let mut large_frame = false;
            while let Some(frame) = take_frame(&mut buf, max_frame)? {
                let _held = frame_permit.take();
                large_frame |= frame.len() > 4 * READ_CHUNK;
                // A parked fetch must not hold up shutdown; no handler is cancelled in
                // the middle of an append because appends never await.
                let api_key = frame.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]]));
                let started = Instant::now();
                let frame = match session.on_frame(broker.credentials(), frame, started)? {
                    Step::Request(frame) => frame,
                    Step::Reply(reply) => {
                        conn.update_principal(&session);
                        let reply = Response::Frame(reply);
                        if queue(&tx, &queue_budget, &mut stop, reply).await.is_err() {
                            return Ok(());
                        }
                        continue;
                    }
                    Step::ReplyAndClose(reply) => {
                        // The answer goes out (the writer drains its queue), then we close.
                        let _ = queue(&tx, &queue_budget, &mut stop, Response::Frame(reply)).await;
                        return Ok(());
                    }
                    Step::Close(why) => {
                        debug!(why, "closing the connection");
                        return Ok(());
                    }
                };
                let response = tokio::select! {
                    r = router::handle(&broker, &conn, frame) => r?,
                    _ = stop.recv() => return Ok(()),
                };
                let response = counted(&broker, api_key, started, response);
                if let Some(response) = response {
                    if queue(&tx, &queue_budget, &mut stop, response)
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            }
            if large_frame {
                // The frames split off `buf` shared its allocation, which `reserve`
                // would take back whole: start over small so an idle connection does
                // not keep the largest frame it ever sent.
                let rest = buf.split();
                buf = BytesMut::with_capacity(READ_CHUNK.max(rest.len()));
                buf.extend_from_slice(&rest);
            }
            // Total bytes (prefix included) of the frame in progress; its size was
            // already checked by take_frame.
            let pending = frame_size(&buf, max_frame)?.map(|n| n + 4);
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
            // Reserve all the frame in progress still needs at once (its size was checked
            // against the frame limit, and a large one holds its share of the request
            // budget): growing in steps would copy the partial frame at every step.
            let want = pending.map_or(READ_CHUNK, |n| n.saturating_sub(buf.len()).max(READ_CHUNK));
            buf.reserve(want);
            // connections.max.idle.ms, and a shorter deadline while part of the shared
            // request budget is held for this connection's frame.
            let mut limit = if frame_permit.is_some() {
                FRAME_DEADLINE.min(idle)
            } else {
                idle
            };
            // A client that has not authenticated gets only a short while to do so, so
            // idle unauthenticated connections cannot pile up.
            if !session.is_authenticated() {
                limit = limit.min(auth_deadline.saturating_duration_since(Instant::now()));
            }
            tokio::select! {
                n = tokio::time::timeout(limit, rd.read_buf(&mut buf)) => match n {
                    Ok(n) => if n? == 0 {
                        return Ok(());
                    },
                    Err(_) => {
                        tracing::debug!("closing idle connection");
                        return Ok(());
                    }
                },
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

/// The connection is ending without an error: shutdown, or the writer is gone.
struct Stopped;

/// Hands a response to the writer once there is room in the queue's byte budget (a
/// response larger than the whole budget waits for an empty queue). A client that
/// stops reading fills it; shutdown must not wait for that.
async fn queue(
    tx: &mpsc::Sender<Queued>,
    budget: &Arc<Semaphore>,
    stop: &mut broadcast::Receiver<()>,
    response: Response,
) -> Result<(), Stopped> {
    let kib = u32::try_from(response.len().div_ceil(1024))
        .unwrap_or(u32::MAX)
        .min(QUEUED_RESPONSE_KIB);
    let queued = tokio::select! {
        permit = budget.clone().acquire_many_owned(kib) => match permit {
            Ok(p) => Queued { response, _budget: Some(p) },
            Err(_) => return Err(Stopped),
        },
        _ = stop.recv() => return Err(Stopped),
    };
    tokio::select! {
        sent = tx.send(queued) => sent.map_err(|_| Stopped), // writer gone: the peer closed
        _ = stop.recv() => Err(Stopped),
    }
}

/// Counts a request in the metrics once its response is ready: now, or for a deferred
/// one (an acks=all Produce) when it completes, so its latency includes replication.
fn counted(
    broker: &Arc<Broker>,
    api_key: Option<i16>,
    started: Instant,
    response: Option<Response>,
) -> Option<Response> {
    let Some(key) = api_key else {
        return response;
    };
    match response {
        Some(Response::Deferred(pending)) => {
            let broker = broker.clone();
            Some(Response::Deferred(Box::pin(async move {
                let r = pending.await;
                broker.metrics.request_done(key, started);
                r
            })))
        }
        other => {
            broker.metrics.request_done(key, started);
            other
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Queued>) {
    while let Some(first) = rx.recv().await {
        if write_response(&mut wr, first.response).await.is_err() {
            return;
        }
        // Drain whatever else is ready without another wakeup per response.
        while let Ok(next) = rx.try_recv() {
            if write_response(&mut wr, next.response).await.is_err() {
                return;
            }
        }
    }
    let _ = wr.shutdown().await;
}

/// Writes one response; a deferred one is awaited here, in its place in the order.
async fn write_response<W: AsyncWrite + Unpin>(wr: &mut W, response: Response) -> io::Result<()> {
    let response = match response {
        Response::Deferred(pending) => match pending.await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "closing the connection");
                return Err(io::Error::other(e.to_string()));
            }
        },
        r => r,
    };
    match &response {
        Response::Frame(frame) => wr.write_all(frame).await,
        Response::Segments(segments) => write_segments(wr, segments).await,
        Response::Deferred(_) => Ok(()),
    }
}

/// Writes `segments` back to back with vectored writes (one `writev` per call instead
/// of one `write` per segment), resuming after however much each call took.
async fn write_segments<W: AsyncWrite + Unpin>(wr: &mut W, segments: &[Bytes]) -> io::Result<()> {
    // Not yet written: `rest`, minus the first `offset` bytes of its first segment.
    let mut rest = segments;
    let mut offset = 0;
    while let Some((first, later)) = rest.split_first() {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let pending = std::iter::once(first.get(offset..).unwrap_or_default())
            .chain(later.iter().map(|s| &s[..]))
            .filter(|s| !s.is_empty());
        let mut n = 0;
        for (slot, s) in iov.iter_mut().zip(pending) {
            *slot = IoSlice::new(s);
            n += 1;
        }
        if n == 0 {
            return Ok(()); // only empty segments left
        }
        let mut written = wr.write_vectored(&iov[..n]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        written += offset;
        offset = 0;
        while let Some((first, later)) = rest.split_first() {
            if written < first.len() {
                offset = written;
                break;
            }
            written -= first.len();
            rest = later;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// A sink that takes at most `step` bytes per call, across several buffers, so
    /// every vectored write is partial somewhere.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let me = self.get_mut();
            let mut left = me.step;
            for b in bufs {
                let n = b.len().min(left);
                me.out.extend_from_slice(&b[..n]);
                left -= n;
            }
            Poll::Ready(Ok(me.step - left))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn segments_survive_partial_vectored_writes() {
        // More segments than one call takes, empty ones among them.
        let segments: Vec<Bytes> = (0..150u8)
            .map(|i| Bytes::from(vec![i; usize::from(i % 5) * 3]))
            .collect();
        let expected = segments.concat();
        for step in [1, 2, 7, 100, 1 << 20] {
            let mut sink = Trickle {
                out: Vec::new(),
                step,
            };
            write_segments(&mut sink, &segments).await.unwrap();
            assert_eq!(sink.out, expected, "step {step}");
        }
        let mut sink = Trickle {
            out: Vec::new(),
            step: 0,
        };
        let err = write_segments(&mut sink, &segments).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
    }
}
