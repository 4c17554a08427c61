//! The thin I/O layer over [`super::proto`]: reading and writing frames and raw bytes on
//! QUIC streams, every read capped and every wait bounded by a stall timeout.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::timeout;

use super::proto::{self, ProtoError, HEAD_LEN};

/// Why reading from a stream stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadFail {
    /// No byte arrived for the stall timeout.
    #[error("no data for {0:?}")]
    Stalled(Duration),
    /// The peer finished the stream before the announced length.
    #[error("the stream ended {missing} bytes early")]
    Truncated {
        /// Bytes still expected.
        missing: u64,
    },
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Proto(#[from] ProtoError),
    /// The stream or the connection is gone.
    #[error("{0}")]
    Gone(quinn::ReadError),
}

/// Fills `buf`, failing when no byte arrives for `stall`.
pub(crate) async fn read_exact(
    recv: &mut quinn::RecvStream,
    buf: &mut [u8],
    stall: Duration,
) -> Result<(), ReadFail> {
    let mut filled = 0;
    while filled < buf.len() {
        match timeout(stall, recv.read(&mut buf[filled..])).await {
            Err(_) => return Err(ReadFail::Stalled(stall)),
            Ok(Ok(Some(n))) => filled += n,
            Ok(Ok(None)) => {
                return Err(ReadFail::Truncated {
                    missing: (buf.len() - filled) as u64,
                })
            }
            Ok(Err(e)) => return Err(ReadFail::Gone(e)),
        }
    }
    Ok(())
}

/// Reads `len` bytes, growing the buffer as they arrive so a peer that announces a big
/// image and sends nothing holds no memory.
pub(crate) async fn read_bytes(
    recv: &mut quinn::RecvStream,
    len: u64,
    stall: Duration,
) -> Result<Vec<u8>, ReadFail> {
    let mut out = Vec::with_capacity(len.min(1 << 20) as usize);
    while (out.len() as u64) < len {
        let want = (len - out.len() as u64).min(1 << 20) as usize;
        match timeout(stall, recv.read_chunk(want, true)).await {
            Err(_) => return Err(ReadFail::Stalled(stall)),
            Ok(Ok(Some(chunk))) => out.extend_from_slice(&chunk.bytes),
            Ok(Ok(None)) => {
                return Err(ReadFail::Truncated {
                    missing: len - out.len() as u64,
                })
            }
            Ok(Err(e)) => return Err(ReadFail::Gone(e)),
        }
    }
    Ok(out)
}

/// Reads one frame with a payload of at most `cap` bytes.
pub(crate) async fn read_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    cap: u32,
    stall: Duration,
) -> Result<T, ReadFail> {
    let mut head = [0u8; HEAD_LEN];
    read_exact(recv, &mut head, stall).await?;
    let len = proto::parse_head(&head, cap)?;
    let payload = read_bytes(recv, len as u64, stall).await?;
    Ok(proto::decode_payload(&payload)?)
}

/// Why writing to a stream stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteFail {
    /// The peer did not take the bytes within the stall timeout.
    #[error("the peer took no data for {0:?}")]
    Stalled(Duration),
    /// The message could not be encoded.
    #[error(transparent)]
    Proto(#[from] ProtoError),
    /// The stream or the connection is gone.
    #[error("{0}")]
    Gone(quinn::WriteError),
}

/// Writes `bytes`, failing when the peer takes nothing for `stall` (it stopped reading).
pub(crate) async fn write_bytes(
    send: &mut quinn::SendStream,
    mut bytes: &[u8],
    stall: Duration,
) -> Result<(), WriteFail> {
    while !bytes.is_empty() {
        match timeout(stall, send.write(bytes)).await {
            Err(_) => return Err(WriteFail::Stalled(stall)),
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(WriteFail::Gone(e)),
        }
    }
    Ok(())
}

/// Writes one frame.
pub(crate) async fn write_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    msg: &T,
    stall: Duration,
) -> Result<(), WriteFail> {
    let frame = proto::encode(msg)?;
    write_bytes(send, &frame, stall).await
}
