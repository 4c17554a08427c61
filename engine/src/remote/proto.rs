//! The wire protocol between a client and `prism node`: messages and their framing, with
//! hard caps on every length that comes from the peer. No I/O: the server and client read
//! and write these frames over QUIC streams, and the tests here drive them alone.
//!
//! A frame is a 12-byte head (magic `PRSM`, protocol version as a big-endian u16, flags
//! u16 = 0, payload length as a big-endian u32) followed by a JSON payload of at most the
//! reader's cap. Each bidirectional stream carries one exchange: a [`Request`] frame (a
//! `process` request is followed by exactly `image_len` raw bytes), then a [`Response`]
//! frame (a `done` response is followed by exactly `output_len` raw bytes). The first
//! stream of a connection carries `hello` with the token; nothing is served before it.
//!
//! **Credits.** A node whose welcome says [`Health::credits`] grants work by credits: the
//! client opens one more stream with [`Request::Credits`] and the node answers on it with a
//! [`Response::Credit`] frame whenever the number of images this connection may have at
//! the node changes ([`credit_window`]: its own images plus the node's free slots), for as
//! long as the connection lives. That stream is not a request: it does not keep an idle
//! connection open. The client sends an image only while it holds fewer than the last
//! window, so a node busy with other clients' work (or shutting down) gets less, or none.
//!
//! **Compatibility.** Within protocol version 1 messages and fields are only added, never
//! changed or removed: every reader ignores fields it does not know, an added field has a
//! default that means "as before", and a new request is sent only to a node that announced
//! it in its welcome. So a client without credits works with a node that grants them (it
//! never asks), and a client with credits gives an older node `cores` images at once, as
//! before. A change that cannot be made this way takes a new [`VERSION`] and ALPN.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{Format, Limits};
use crate::error::ErrorKind;
use crate::exec::Timings;
use crate::ops::{Features, Op};

/// The first bytes of every frame.
pub const MAGIC: [u8; 4] = *b"PRSM";
/// The protocol version this build speaks; a frame with another is refused.
pub const VERSION: u16 = 1;
/// The TLS ALPN id: a node accepts no other.
pub const ALPN: &[u8] = b"prism/1";
/// Bytes in a frame head.
pub const HEAD_LEN: usize = 12;
/// Cap on a request's JSON payload (a pipeline with its params fits many times over).
pub const MAX_REQUEST_HEADER: u32 = 64 << 10;
/// Cap on a response's JSON payload (SIFT features of a big image can take megabytes).
pub const MAX_RESPONSE_HEADER: u32 = 64 << 20;
/// Cap on the ops of one pipeline.
pub const MAX_OPS: usize = 64;

/// Why a frame could not be read or written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtoError {
    /// The bytes do not start with the frame magic: not a Prism peer.
    #[error("not a Prism frame (bad magic bytes)")]
    BadMagic,
    /// The peer speaks another protocol version.
    #[error("protocol version {got} is not supported (this build speaks {VERSION})")]
    Version {
        /// The version in the frame.
        got: u16,
    },
    /// Flag bits this version does not define.
    #[error("unknown frame flags {0:#06x}")]
    BadFlags(u16),
    /// The payload length is over the cap.
    #[error("frame payload of {len} bytes is over the cap of {cap} bytes")]
    TooLarge {
        /// The announced length.
        len: u32,
        /// The cap.
        cap: u32,
    },
    /// The payload is not the JSON message expected.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message could not be serialized (e.g. a NaN in features).
    #[error("cannot encode message: {0}")]
    Encode(String),
}

impl ProtoError {
    /// The error code a node answers this with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtoError::Version { .. } => ErrorCode::Version,
            ProtoError::TooLarge { .. } => ErrorCode::HeaderTooLarge,
            ProtoError::BadMagic | ProtoError::BadFlags(_) | ProtoError::Malformed(_) => {
                ErrorCode::Protocol
            }
            ProtoError::Encode(_) => ErrorCode::Internal,
        }
    }
}

/// Why a node refused or failed a request; also the QUIC application close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The token is wrong (the connection is closed).
    BadToken = 1,
    /// Bytes that are not a valid frame.
    Protocol = 2,
    /// A frame payload over the cap.
    HeaderTooLarge = 3,
    /// An image over the node's byte limit.
    ImageTooLarge = 4,
    /// An image over the node's pixel limit.
    TooManyPixels = 5,
    /// The image took longer than the node allows (receiving or processing).
    Timeout = 6,
    /// The node has as many connections as it serves.
    Busy = 7,
    /// The node is shutting down; the work should go elsewhere.
    ShuttingDown = 8,
    /// The engine refused the input (bad image, unsupported, limit): final for that input.
    Input = 9,
    /// A well-formed request that makes no sense (no ops, invalid params, zero size).
    BadRequest = 10,
    /// The node failed for a reason of its own.
    Internal = 11,
    /// The peer speaks another protocol version.
    Version = 12,
}

impl ErrorCode {
    /// Every code, for lookups by number.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadToken,
        ErrorCode::Protocol,
        ErrorCode::HeaderTooLarge,
        ErrorCode::ImageTooLarge,
        ErrorCode::TooManyPixels,
        ErrorCode::Timeout,
        ErrorCode::Busy,
        ErrorCode::ShuttingDown,
        ErrorCode::Input,
        ErrorCode::BadRequest,
        ErrorCode::Internal,
        ErrorCode::Version,
    ];

    /// The number used as a QUIC close or reset code.
    pub fn as_u32(self) -> u32 {
        self as u32
    }

    /// The code with number `n`, if any.
    pub fn from_u32(n: u32) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| c.as_u32() == n)
    }
}

/// What a client asks on a stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Request {
    /// The first message of a connection: proves the client holds the node's token.
    Hello {
        /// The node's token.
        token: String,
        /// The client's build version, for the node's log.
        client_version: String,
    },
    /// Asks for cores, queue depth and version.
    Health,
    /// Opens this connection's credit stream: the node answers with [`Response::Credit`]
    /// frames until the connection ends. Only for a node whose welcome says
    /// [`Health::credits`].
    Credits,
    /// One image to process; `image_len` raw bytes follow the frame.
    Process(ProcessHeader),
}

/// How to process one image, and how big it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessHeader {
    /// The pipeline. Each op's params are parsed as the header is decoded, so a header
    /// with a value this node does not accept is refused as malformed, naming the value.
    pub ops: Vec<Op>,
    /// The output format; `None` keeps the input's.
    pub format: Option<Format>,
    /// JPEG output quality, 1-100.
    pub jpeg_quality: u8,
    /// The client's decoder limits; the node applies the lower of its own and these.
    pub limits: Limits,
    /// Width the client read from the image header (checked against the bytes).
    pub width: u32,
    /// Height the client read from the image header (checked against the bytes).
    pub height: u32,
    /// Bytes of image that follow the frame.
    pub image_len: u64,
}

/// The caps a node applies to every request before reading the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Bytes of image per request.
    pub max_image_bytes: u64,
    /// Pixels per image.
    pub max_pixels: u64,
}

impl ProcessHeader {
    /// Refuses, before a byte of image is read, what the caps or the engine would refuse.
    pub fn check(&self, caps: &Caps) -> Result<(), ErrorMsg> {
        let bad = |m: String| Err(ErrorMsg::new(ErrorCode::BadRequest, ErrorKind::Usage, m));
        if self.ops.is_empty() {
            return bad("no operation in the pipeline".into());
        }
        if self.ops.len() > MAX_OPS {
            return bad(format!(
                "{} ops in one pipeline, over the cap of {MAX_OPS}",
                self.ops.len()
            ));
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return bad(format!(
                "jpeg quality {} is not in 1-100",
                self.jpeg_quality
            ));
        }
        if self.image_len == 0 || self.width == 0 || self.height == 0 {
            return bad("empty image".into());
        }
        let byte_cap = caps.max_image_bytes.min(self.limits.max_bytes);
        if self.image_len > byte_cap {
            return Err(ErrorMsg::new(
                ErrorCode::ImageTooLarge,
                ErrorKind::Limit,
                format!(
                    "image is {} bytes, over the node's limit of {byte_cap} bytes",
                    self.image_len
                ),
            ));
        }
        let pixels = self.width as u64 * self.height as u64;
        let pixel_cap = caps.max_pixels.min(self.limits.max_pixels);
        if pixels > pixel_cap {
            return Err(ErrorMsg::new(
                ErrorCode::TooManyPixels,
                ErrorKind::Limit,
                format!(
                    "image is {}x{} = {pixels} pixels, over the node's limit of {pixel_cap}",
                    self.width, self.height
                ),
            ));
        }
        Ok(())
    }

    /// The most output bytes a node may send back for this image: 8 bytes a pixel
    /// (uncompressed RGBA with room to spare) plus 64 MiB of metadata.
    pub fn max_output_bytes(&self) -> u64 {
        (self.width as u64 * self.height as u64)
            .saturating_mul(8)
            .saturating_add(64 << 20)
    }
}

/// What a node answers on a stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Response {
    /// The token is right: the connection may send work.
    Welcome(Health),
    /// The answer to [`Request::Health`].
    Health(Health),
    /// The image is done; `output_len` raw bytes follow the frame.
    Done(DoneHeader),
    /// The request was refused or failed.
    Error(ErrorMsg),
    /// On the credit stream: the images this connection may have at the node from now on.
    Credit(Credit),
}

/// A node's grant to one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    /// Images this connection may have at the node at once (sent and not yet answered);
    /// 0 while the node is busy with other work or shutting down.
    pub window: u32,
}

/// The window a node grants one connection: the images it already has at the node plus
/// the node's free slots (threads not taken by anyone's images), so the images of all
/// clients together stay within the node's threads; 0 while shutting down.
///
/// A lone client always gets `cores`; images that other clients hold are taken off.
pub fn credit_window(cores: u32, node_images: u32, conn_images: u32, shutting_down: bool) -> u32 {
    if shutting_down {
        return 0;
    }
    conn_images.saturating_add(cores.saturating_sub(node_images))
}

/// A node's capacity and state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// The node's build version.
    pub version: String,
    /// The protocol version it speaks.
    pub protocol: u16,
    /// Threads it processes images on: how many images a client should send at once.
    pub cores: u32,
    /// Images accepted and waiting for a core.
    pub queue_depth: u32,
    /// Images accepted and not yet answered (running or waiting).
    pub in_flight: u32,
    /// Its pixel cap per image.
    pub max_pixels: u64,
    /// Its byte cap per image.
    pub max_image_bytes: u64,
    /// Whether it grants credits ([`Request::Credits`]); nodes from before credits leave it
    /// out, and clients then send them `cores` images at once.
    #[serde(default)]
    pub credits: bool,
}

/// A processed image's description; its bytes follow the frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DoneHeader {
    /// The output's format.
    pub format: Format,
    /// Keypoints (and descriptors) of feature ops.
    pub features: Option<Features>,
    /// Per-stage times on the node.
    pub timings: Timings,
    /// Bytes of output that follow the frame.
    pub output_len: u64,
}

/// A refusal or failure: a code for programs, a fault kind and a message for people.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ErrorMsg {
    /// What went wrong, as a stable code.
    pub code: ErrorCode,
    /// The fault, as the engine classifies it.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
}

impl ErrorMsg {
    /// An error message.
    pub fn new(code: ErrorCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            code,
            kind,
            message: message.into(),
        }
    }
}

/// Serializes `msg` into one frame (head and payload).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtoError> {
    let mut out = vec![0u8; HEAD_LEN];
    serde_json::to_writer(&mut out, msg).map_err(|e| ProtoError::Encode(e.to_string()))?;
    let len = u32::try_from(out.len() - HEAD_LEN)
        .map_err(|_| ProtoError::Encode("message over 4 GiB".into()))?;
    out[..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_be_bytes());
    out[6..8].copy_from_slice(&0u16.to_be_bytes());
    out[8..12].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// [`encode`], refusing a payload over `cap`: what the peer's reader would refuse, found
/// before anything is sent.
pub fn encode_capped<T: Serialize>(msg: &T, cap: u32) -> Result<Vec<u8>, ProtoError> {
    let frame = encode(msg)?;
    let len = (frame.len() - HEAD_LEN) as u32;
    if len > cap {
        return Err(ProtoError::TooLarge { len, cap });
    }
    Ok(frame)
}

/// Checks a frame head and returns its payload length, refusing one over `cap`.
pub fn parse_head(head: &[u8; HEAD_LEN], cap: u32) -> Result<u32, ProtoError> {
    if head[..4] != MAGIC {
        return Err(ProtoError::BadMagic);
    }
    let version = u16::from_be_bytes([head[4], head[5]]);
    if version != VERSION {
        return Err(ProtoError::Version { got: version });
    }
    let flags = u16::from_be_bytes([head[6], head[7]]);
    if flags != 0 {
        return Err(ProtoError::BadFlags(flags));
    }
    let len = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    if len > cap {
        return Err(ProtoError::TooLarge { len, cap });
    }
    Ok(len)
}

/// Parses a payload as message `T`.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ProtoError> {
    serde_json::from_slice(payload).map_err(|e| ProtoError::Malformed(e.to_string()))
}

/// Reads one frame from the start of `buf`: `Ok(None)` while more bytes are needed,
/// else the message and the bytes it used. A head is judged as soon as it is complete,
/// so an oversized or foreign frame is refused before its payload arrives.
pub fn decode_frame<T: DeserializeOwned>(
    buf: &[u8],
    cap: u32,
) -> Result<Option<(T, usize)>, ProtoError> {
    let Some(head) = buf.first_chunk::<HEAD_LEN>() else {
        // Refuse a foreign peer from its first bytes rather than waiting for twelve.
        let n = buf.len().min(MAGIC.len());
        if buf[..n] != MAGIC[..n] {
            return Err(ProtoError::BadMagic);
        }
        return Ok(None);
    };
    let len = parse_head(head, cap)? as usize;
    let Some(payload) = buf.get(HEAD_LEN..HEAD_LEN + len) else {
        return Ok(None);
    };
    Ok(Some((decode_payload(payload)?, HEAD_LEN + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ProcessHeader {
        ProcessHeader {
            ops: vec![Op::default_for("histogram-equalization").unwrap()],
            format: Some(Format::Png),
            jpeg_quality: 95,
            limits: Limits::default(),
            width: 640,
            height: 480,
            image_len: 1000,
        }
    }

    fn caps() -> Caps {
        Caps {
            max_image_bytes: 1 << 20,
            max_pixels: 1_000_000,
        }
    }

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(msg: T) {
        let frame = encode(&msg).unwrap();
        let (back, used): (T, usize) = decode_frame(&frame, MAX_RESPONSE_HEADER).unwrap().unwrap();
        assert_eq!(back, msg);
        assert_eq!(used, frame.len());
    }

    #[test]
    fn a_frame_over_the_cap_is_refused_before_sending() {
        let msg = Response::Error(ErrorMsg::new(
            ErrorCode::Input,
            ErrorKind::BadInput,
            "x".repeat(100),
        ));
        let len = encode(&msg).unwrap().len() - HEAD_LEN;
        assert!(encode_capped(&msg, len as u32).is_ok());
        assert_eq!(
            encode_capped(&msg, len as u32 - 1),
            Err(ProtoError::TooLarge {
                len: len as u32,
                cap: len as u32 - 1
            })
        );
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(Request::Hello {
            token: "abc".into(),
            client_version: "0.1.0".into(),
        });
        round_trip(Request::Health);
        round_trip(Request::Credits);
        round_trip(Request::Process(header()));
        round_trip(Response::Credit(Credit { window: 3 }));
        let health = Health {
            version: "0.1.0".into(),
            protocol: VERSION,
            cores: 8,
            queue_depth: 2,
            in_flight: 10,
            max_pixels: 5,
            max_image_bytes: 6,
            credits: true,
        };
        round_trip(Response::Welcome(health.clone()));
        round_trip(Response::Health(health));
        round_trip(Response::Done(DoneHeader {
            format: Format::Jpeg,
            features: Some(Features {
                keypoints: vec![crate::ops::KeyPoint {
                    x: 1.25,
                    y: 0.1,
                    size: 3.3,
                    angle: -1.0,
                    response: 1e-7,
                    octave: 0x00ff_0102,
                }],
                descriptors: Some(vec![vec![7u8; 128]]),
            }),
            timings: Timings {
                decode: 1.5,
                op: 2.0,
                encode: 0.25,
            },
            output_len: 77,
        }));
        round_trip(Response::Error(ErrorMsg::new(
            ErrorCode::TooManyPixels,
            ErrorKind::Limit,
            "too big",
        )));
    }

    #[test]
    fn a_welcome_from_a_node_before_credits_means_no_credits() {
        // What a node built before credits sends: no `credits` field.
        let old = br#"{"type":"welcome","version":"0.1.0","protocol":1,"cores":4,
            "queue_depth":0,"in_flight":0,"max_pixels":100,"max_image_bytes":200}"#;
        match decode_payload::<Response>(old).unwrap() {
            Response::Welcome(h) => assert!(!h.credits && h.cores == 4),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fields_and_messages_a_reader_does_not_know_are_ignored_or_refused_cleanly() {
        // A newer node may add fields: an older reader takes the rest.
        let newer = br#"{"type":"welcome","version":"9.0.0","protocol":1,"cores":2,
            "queue_depth":0,"in_flight":0,"max_pixels":1,"max_image_bytes":1,
            "credits":true,"zone":"eu-1"}"#;
        assert!(matches!(
            decode_payload::<Response>(newer).unwrap(),
            Response::Welcome(Health { credits: true, .. })
        ));
        let credit = br#"{"type":"credit","window":2,"reason":"drain"}"#;
        assert_eq!(
            decode_payload::<Response>(credit).unwrap(),
            Response::Credit(Credit { window: 2 })
        );
        // A request this build does not know is a protocol error for that stream only.
        let e = decode_payload::<Request>(br#"{"type":"subscribe-metrics"}"#).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Protocol);
    }

    #[test]
    fn the_window_is_the_connections_images_plus_the_nodes_free_slots() {
        // A lone client: all threads, whatever it holds.
        for mine in 0..=4 {
            assert_eq!(credit_window(4, mine, mine, false), 4);
        }
        // Another client holds 3 of 4 threads: one for us (plus what we hold).
        assert_eq!(credit_window(4, 3, 0, false), 1);
        assert_eq!(credit_window(4, 4, 1, false), 1);
        // All taken by others: nothing new, and more than all (an older client that ignores
        // credits overfilled the node) does not wrap.
        assert_eq!(credit_window(4, 4, 0, false), 0);
        assert_eq!(credit_window(4, 9, 2, false), 2);
        // Shutting down: nothing at all.
        assert_eq!(credit_window(4, 0, 0, true), 0);
        assert_eq!(credit_window(u32::MAX, 0, u32::MAX, false), u32::MAX);
    }

    #[test]
    fn feature_floats_survive_exactly() {
        // Remote results must be byte-identical to local ones, features.json included.
        let xs = [0.1f32, 1.0 / 3.0, 1234.5677, f32::MIN_POSITIVE, 3.4e38];
        let kps: Vec<_> = xs
            .iter()
            .map(|&v| crate::ops::KeyPoint {
                x: v,
                y: -v,
                size: v,
                angle: v,
                response: v,
                octave: 1,
            })
            .collect();
        let f = Features {
            keypoints: kps,
            descriptors: None,
        };
        let back: Features = decode_payload(&encode(&f).unwrap()[HEAD_LEN..]).unwrap();
        for (a, b) in f.keypoints.iter().zip(&back.keypoints) {
            assert_eq!(a.x.to_bits(), b.x.to_bits());
            assert_eq!(a.response.to_bits(), b.response.to_bits());
        }
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let frame = encode(&Request::Health).unwrap();
        for cut in 0..frame.len() {
            let r: Option<(Request, usize)> =
                decode_frame(&frame[..cut], MAX_REQUEST_HEADER).unwrap();
            assert!(r.is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn trailing_bytes_are_left_for_the_caller() {
        let mut buf = encode(&Request::Health).unwrap();
        let n = buf.len();
        buf.extend_from_slice(b"image bytes");
        let (_, used): (Request, usize) = decode_frame(&buf, MAX_REQUEST_HEADER).unwrap().unwrap();
        assert_eq!(used, n);
    }

    #[test]
    fn foreign_bytes_are_refused_at_once() {
        let r: Result<Option<(Request, usize)>, _> = decode_frame(b"GET ", MAX_REQUEST_HEADER);
        assert_eq!(r.unwrap_err(), ProtoError::BadMagic);
        let r: Result<Option<(Request, usize)>, _> = decode_frame(b"P", MAX_REQUEST_HEADER);
        assert!(r.unwrap().is_none());
        let r: Result<Option<(Request, usize)>, _> =
            decode_frame(b"HTTP/1.1 200 OK\r\n", MAX_REQUEST_HEADER);
        assert_eq!(r.unwrap_err(), ProtoError::BadMagic);
    }

    #[test]
    fn wrong_version_and_flags_are_refused() {
        let mut frame = encode(&Request::Health).unwrap();
        frame[5] = 9;
        let e = decode_frame::<Request>(&frame, MAX_REQUEST_HEADER).unwrap_err();
        assert_eq!(e, ProtoError::Version { got: 9 });
        assert_eq!(e.code(), ErrorCode::Version);
        let mut frame = encode(&Request::Health).unwrap();
        frame[7] = 1;
        let e = decode_frame::<Request>(&frame, MAX_REQUEST_HEADER).unwrap_err();
        assert_eq!(e, ProtoError::BadFlags(1));
    }

    #[test]
    fn oversized_header_is_refused_from_the_head_alone() {
        let mut head = [0u8; HEAD_LEN];
        head[..4].copy_from_slice(&MAGIC);
        head[4..6].copy_from_slice(&VERSION.to_be_bytes());
        head[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        let e = decode_frame::<Request>(&head, MAX_REQUEST_HEADER).unwrap_err();
        assert_eq!(
            e,
            ProtoError::TooLarge {
                len: u32::MAX,
                cap: MAX_REQUEST_HEADER
            }
        );
        assert_eq!(e.code(), ErrorCode::HeaderTooLarge);
        // Exactly at the cap is allowed.
        head[8..12].copy_from_slice(&MAX_REQUEST_HEADER.to_be_bytes());
        assert_eq!(
            parse_head(&head, MAX_REQUEST_HEADER),
            Ok(MAX_REQUEST_HEADER)
        );
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let frame_of = |payload: &[u8]| {
            let mut f = encode(&Request::Health).unwrap();
            f.truncate(HEAD_LEN);
            f[8..12].copy_from_slice(&(payload.len() as u32).to_be_bytes());
            f.extend_from_slice(payload);
            f
        };
        for payload in [
            &b"{not json"[..],
            br#"{"type":"launch-missiles"}"#,
            br#"{"type":"hello"}"#,
            br#"{"type":"process","ops":[{"op":"blur"}]}"#,
            br#"[1,2,3]"#,
            b"",
            &[0xff, 0xfe, 0x00][..],
        ] {
            let e = decode_frame::<Request>(&frame_of(payload), MAX_REQUEST_HEADER).unwrap_err();
            assert!(matches!(e, ProtoError::Malformed(_)), "{payload:?}: {e:?}");
            assert_eq!(e.code(), ErrorCode::Protocol);
        }
    }

    #[test]
    fn random_garbage_never_panics() {
        // A fixed LCG: the same bytes every run, many shapes of nonsense.
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u8
        };
        for n in 0..2000usize {
            let len = n % 64;
            let mut buf: Vec<u8> = (0..len).map(|_| next()).collect();
            if n % 3 == 0 && len >= HEAD_LEN {
                // A valid head with a random length, to reach the payload parser.
                buf[..4].copy_from_slice(&MAGIC);
                buf[4..8].copy_from_slice(&[0, 1, 0, 0]);
            }
            let _ = decode_frame::<Request>(&buf, MAX_REQUEST_HEADER);
            let _ = decode_frame::<Response>(&buf, MAX_RESPONSE_HEADER);
        }
    }

    #[test]
    fn caps_refuse_before_reading_the_image() {
        assert_eq!(header().check(&caps()), Ok(()));
        let mut h = header();
        h.image_len = (1 << 20) + 1;
        assert_eq!(h.check(&caps()).unwrap_err().code, ErrorCode::ImageTooLarge);
        let mut h = header();
        h.width = 1001;
        h.height = 1000;
        let e = h.check(&caps()).unwrap_err();
        assert_eq!(
            (e.code, e.kind),
            (ErrorCode::TooManyPixels, ErrorKind::Limit)
        );
        // The client's own, lower limit wins.
        let mut h = header();
        h.limits.max_pixels = 100;
        assert_eq!(h.check(&caps()).unwrap_err().code, ErrorCode::TooManyPixels);
        let mut h = header();
        h.ops.clear();
        assert_eq!(h.check(&caps()).unwrap_err().code, ErrorCode::BadRequest);
        let mut h = header();
        h.image_len = 0;
        assert_eq!(h.check(&caps()).unwrap_err().code, ErrorCode::BadRequest);
        let mut h = header();
        h.jpeg_quality = 0;
        assert_eq!(h.check(&caps()).unwrap_err().code, ErrorCode::BadRequest);
        let mut h = header();
        h.ops = vec![h.ops[0].clone(); MAX_OPS + 1];
        assert_eq!(h.check(&caps()).unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn error_codes_are_stable_numbers() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u32(c.as_u32()), Some(c));
        }
        assert_eq!(ErrorCode::BadToken.as_u32(), 1);
        assert_eq!(ErrorCode::Version.as_u32(), 12);
        assert_eq!(ErrorCode::from_u32(0), None);
        assert_eq!(ErrorCode::from_u32(99), None);
    }
}
