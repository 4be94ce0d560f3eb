//! WebSocket frames on an upgraded actix connection, with actix-http's codec.
//!
//! The 101 response's body *is* the connection's outgoing side: the HTTP dispatcher pulls
//! frames from the session's queue when the socket can take them, so there is no writer task
//! and no second queue in between, and a client that stops reading stops the pulls. The
//! incoming side decodes the request payload and joins fragmented messages up to the
//! message limit. (actix-ws puts a 32-slot channel and, for a non-blocking sender, a writer
//! task between the two: about 2.5 KiB per idle connection, measured with massif.)

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use actix_codec::{Decoder, Encoder};
use actix_http::body::{BodyStream, MessageBody};
use actix_http::ws::{Codec, Frame, HandshakeError, Item, Message, ProtocolError};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::BufMut;
use futures_channel::mpsc;
use futures_util::{Stream, StreamExt};
use tokio::sync::Notify;

pub use actix_http::ws::{CloseCode, CloseReason};

/// Bytes of frames handed to the dispatcher at once, at most (one frame may exceed it).
const CHUNK_BYTES: usize = 64 << 10;

/// What the session sends.
pub enum Outgoing {
    Text(String),
    Records(Spliced),
    Ping,
    Pong(Bytes),
    /// The last frame.
    Close(CloseReason),
}

/// A text message of shared pieces, written into the frame without joining them first:
/// `head`, the `parts` separated by commas, `tail`. (Records come from the push cache as
/// shared bytes; joining them per subscriber would cost a copy and a UTF-8 check each.)
pub struct Spliced {
    pub head: String,
    pub parts: Vec<Bytes>,
    pub tail: String,
}

impl Spliced {
    fn len(&self) -> usize {
        let parts: usize = self.parts.iter().map(Bytes::len).sum();
        self.head.len() + parts + self.parts.len().saturating_sub(1) + self.tail.len()
    }

    /// One unmasked, unfragmented text frame (RFC 6455 §5.2), as the server sends them.
    fn write_frame(&self, dst: &mut BytesMut) {
        const FIN_TEXT: u8 = 0x81;
        let len = self.len();
        dst.reserve(len + 10);
        dst.put_u8(FIN_TEXT);
        if len < 126 {
            dst.put_u8(len as u8);
        } else if let Ok(len) = u16::try_from(len) {
            dst.put_u8(126);
            dst.put_u16(len);
        } else {
            dst.put_u8(127);
            dst.put_u64(len as u64);
        }
        dst.put_slice(self.head.as_bytes());
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                dst.put_u8(b',');
            }
            dst.put_slice(part);
        }
        dst.put_slice(self.tail.as_bytes());
    }
}

/// What the client sent.
pub enum Incoming {
    Text(String),
    Binary,
    Ping(Bytes),
    Pong,
    Close,
}

/// Why reading stopped short of a message.
pub enum ReadError {
    /// Over the message limit.
    TooBig,
    /// Text that is not UTF-8.
    NotUtf8,
    /// Frames that break RFC 6455.
    Protocol,
}

/// The client is gone (the dispatcher dropped the connection's outgoing side).
pub struct Gone;

/// Accepts a WebSocket upgrade: the 101 response to return, and the two sides for the session.
pub fn accept(
    request: &HttpRequest,
    payload: web::Payload,
    max_message_bytes: usize,
) -> Result<(HttpResponse, Reader, Writer), HandshakeError> {
    let mut response = actix_http::ws::handshake(request.head())?;
    let (sender, receiver) = mpsc::unbounded();
    let queued = Arc::new(AtomicUsize::new(0));
    let drained = Arc::new(Notify::new());
    let body = OutgoingFrames {
        receiver,
        codec: Codec::new(),
        buf: BytesMut::new(),
        queued: queued.clone(),
        drained: drained.clone(),
        closed: false,
    };
    // Fails only on a header the builder refused earlier; the handshake sets only its own.
    let response = response
        .message_body(BodyStream::new(body).boxed())
        .map_err(|_| HandshakeError::NoWebsocketUpgrade)?;
    let reader = Reader {
        payload,
        frames: FrameDecoder::new(max_message_bytes),
    };
    let writer = Writer {
        sender,
        queued,
        drained,
    };
    Ok((response.into(), reader, writer))
}

impl Outgoing {
    /// Bytes of text, which count against the connection's budget.
    fn text_len(&self) -> Option<usize> {
        match self {
            Outgoing::Text(text) => Some(text.len()),
            Outgoing::Records(spliced) => Some(spliced.len()),
            _ => None,
        }
    }
}

/// The session's sending side.
pub struct Writer {
    sender: mpsc::UnboundedSender<Outgoing>,
    queued: Arc<AtomicUsize>,
    drained: Arc<Notify>,
}

impl Writer {
    pub fn send(&self, outgoing: Outgoing) -> Result<(), Gone> {
        if let Some(len) = outgoing.text_len() {
            self.queued.fetch_add(len, Ordering::AcqRel);
        }
        self.sender.unbounded_send(outgoing).map_err(|_| Gone)
    }

    /// Bytes of text queued and not yet taken by the dispatcher.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Notified whenever the dispatcher took queued text.
    pub fn drained(&self) -> Arc<Notify> {
        self.drained.clone()
    }
}

/// The 101 response's body: the queued frames, encoded as the dispatcher asks for them.
struct OutgoingFrames {
    receiver: mpsc::UnboundedReceiver<Outgoing>,
    codec: Codec,
    buf: BytesMut,
    queued: Arc<AtomicUsize>,
    drained: Arc<Notify>,
    closed: bool,
}

impl Stream for OutgoingFrames {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut taken = 0;
        while !this.closed && this.buf.len() < CHUNK_BYTES {
            let outgoing = match this.receiver.poll_next_unpin(cx) {
                Poll::Ready(Some(outgoing)) => outgoing,
                // The session ended without a close (it cannot send one any more).
                Poll::Ready(None) => {
                    this.closed = true;
                    break;
                }
                Poll::Pending => break,
            };
            taken += outgoing.text_len().unwrap_or(0);
            let message = match outgoing {
                Outgoing::Records(spliced) => {
                    spliced.write_frame(&mut this.buf);
                    continue;
                }
                Outgoing::Text(text) => Message::Text(text.into()),
                Outgoing::Ping => Message::Ping(Bytes::new()),
                Outgoing::Pong(bytes) => Message::Pong(bytes),
                Outgoing::Close(reason) => {
                    this.closed = true;
                    Message::Close(Some(reason))
                }
            };
            if let Err(err) = this.codec.encode(message, &mut this.buf) {
                return Poll::Ready(Some(Err(actix_web::error::ErrorInternalServerError(err))));
            }
        }
        if taken > 0 {
            this.queued.fetch_sub(taken, Ordering::AcqRel);
            this.drained.notify_one();
        }
        if !this.buf.is_empty() {
            Poll::Ready(Some(Ok(this.buf.split().freeze())))
        } else if this.closed {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

/// The session's receiving side.
pub struct Reader {
    payload: web::Payload,
    frames: FrameDecoder,
}

impl Reader {
    /// The next message; `None` once the client is gone.
    pub async fn next(&mut self) -> Option<Result<Incoming, ReadError>> {
        loop {
            if let Some(message) = self.frames.next_message() {
                return Some(message);
            }
            match self.payload.next().await {
                Some(Ok(bytes)) => self.frames.feed(&bytes),
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// Messages out of the bytes a client sent: frames decoded, fragments joined, limits
/// applied. Fed by the [`Reader`] (and by the fuzzer, `crate::fuzz`).
pub struct FrameDecoder {
    buf: BytesMut,
    codec: Codec,
    /// A fragmented message being joined: whether it is text, and its bytes so far.
    fragments: Option<(bool, BytesMut)>,
    max_message_bytes: usize,
}

impl FrameDecoder {
    pub fn new(max_message_bytes: usize) -> FrameDecoder {
        FrameDecoder {
            buf: BytesMut::new(),
            codec: Codec::new().max_size(max_message_bytes),
            fragments: None,
            max_message_bytes,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next message in what was fed; `None` until more bytes come.
    pub fn next_message(&mut self) -> Option<Result<Incoming, ReadError>> {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => match self.on_frame(frame) {
                    Ok(Some(incoming)) => return Some(Ok(incoming)),
                    Ok(None) => continue,
                    Err(err) => return Some(Err(err)),
                },
                Ok(None) => return None,
                Err(ProtocolError::Overflow) => return Some(Err(ReadError::TooBig)),
                Err(_) => return Some(Err(ReadError::Protocol)),
            }
        }
    }

    fn on_frame(&mut self, frame: Frame) -> Result<Option<Incoming>, ReadError> {
        let joining = self.fragments.is_some();
        let (text, bytes) = match frame {
            Frame::Ping(bytes) => return Ok(Some(Incoming::Ping(bytes))),
            Frame::Pong(_) => return Ok(Some(Incoming::Pong)),
            Frame::Close(_) => return Ok(Some(Incoming::Close)),
            // Only control frames may come between the fragments of a message.
            Frame::Text(_)
            | Frame::Binary(_)
            | Frame::Continuation(Item::FirstText(_) | Item::FirstBinary(_))
                if joining =>
            {
                return Err(ReadError::Protocol);
            }
            Frame::Continuation(Item::Continue(_) | Item::Last(_)) if !joining => {
                return Err(ReadError::Protocol);
            }
            Frame::Text(bytes) => (true, bytes),
            Frame::Binary(bytes) => (false, bytes),
            Frame::Continuation(Item::FirstText(bytes)) => {
                self.fragments = Some((true, BytesMut::from(&bytes[..])));
                return Ok(None);
            }
            Frame::Continuation(Item::FirstBinary(bytes)) => {
                self.fragments = Some((false, BytesMut::from(&bytes[..])));
                return Ok(None);
            }
            Frame::Continuation(Item::Continue(bytes)) => {
                self.append(&bytes)?;
                return Ok(None);
            }
            Frame::Continuation(Item::Last(bytes)) => {
                self.append(&bytes)?;
                let (text, joined) = self.fragments.take().ok_or(ReadError::Protocol)?;
                (text, joined.freeze())
            }
        };
        if !text {
            return Ok(Some(Incoming::Binary));
        }
        String::from_utf8(Vec::from(bytes))
            .map(|text| Some(Incoming::Text(text)))
            .map_err(|_| ReadError::NotUtf8)
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), ReadError> {
        let (_, joined) = self.fragments.as_mut().ok_or(ReadError::Protocol)?;
        if joined.len() + bytes.len() > self.max_message_bytes {
            return Err(ReadError::TooBig);
        }
        joined.extend_from_slice(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use actix_http::ws::{OpCode, Parser};

    use super::*;

    /// Every length encoding (7-bit, 16-bit, 64-bit) matches actix-http's own writer.
    #[test]
    fn spliced_frames_match_the_codec() {
        for len in [0, 1, 124, 125, 126, 127, 65_535, 65_536, 200_000] {
            let part = Bytes::from(vec![b'x'; len]);
            let spliced = Spliced {
                head: "[".into(),
                parts: vec![part.clone(), Bytes::from_static(b"1")],
                tail: "]".into(),
            };
            let mut ours = BytesMut::new();
            spliced.write_frame(&mut ours);
            let joined = [&b"["[..], &part, b",", b"1", b"]"].concat();
            let mut theirs = BytesMut::new();
            Parser::write_message(&mut theirs, &joined, OpCode::Text, true, false);
            assert_eq!(ours, theirs, "payload of {} bytes", joined.len());
            assert_eq!(spliced.len(), joined.len());
        }
    }
}
