//! The STOMP 1.0/1.1/1.2 wire codec for `tokio_util::codec::Framed`.
//!
//! The decoder is incremental: every byte is looked at once, even when a large
//! body arrives in many small reads, and every limit is checked before the
//! bytes are buffered further, so a hostile peer cannot make it hold more than
//! about `max_frame_size` bytes.

use super::frame::{Command, Frame, HeartBeat, Transmission, Version};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::io;
use tokio_util::codec::{Decoder, Encoder};

/// Bounds on what one peer may send in one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body, and largest header block, in bytes.
    pub max_frame_size: usize,
    /// Most headers in one frame.
    pub max_headers: usize,
    /// Longest command or header line, in bytes (escaped form).
    pub max_header_length: usize,
}

impl Default for Limits {
    /// ActiveMQ's STOMP defaults for header count and length; a 16 MiB body
    /// limit instead of its 100 MiB so that many connections stay affordable.
    fn default() -> Self {
        Limits {
            max_frame_size: 16 * 1024 * 1024,
            max_headers: 1000,
            max_header_length: 10 * 1024,
        }
    }
}

/// Everything that can go wrong reading or writing a frame. After a decode
/// error the stream is out of sync: answer with ERROR and close.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("frame body exceeds the limit of {limit} bytes")]
    FrameTooLarge { limit: usize },
    #[error("more than {limit} headers in one frame")]
    TooManyHeaders { limit: usize },
    #[error("header or command line longer than {limit} bytes")]
    HeaderTooLong { limit: usize },
    #[error("malformed header line {0:?}: expected name:value")]
    MalformedHeader(String),
    #[error("invalid escape sequence in header {0:?}")]
    InvalidEscape(String),
    #[error("header is not valid UTF-8")]
    InvalidUtf8,
    #[error("invalid content-length {0:?}")]
    InvalidContentLength(String),
    #[error("frame body of content-length {0} is not followed by a NUL byte")]
    MissingNul(usize),
    #[error("header {0:?} cannot be represented in STOMP {1}")]
    Unencodable(String, Version),
}

#[derive(Debug)]
enum State {
    /// Between frames: EOLs here are heart-beats.
    Idle,
    /// The command line was read; reading header lines.
    Headers {
        command: Command,
        headers: Vec<(String, String)>,
        header_bytes: usize,
    },
    /// Headers done; `scanned` bytes of the buffer are known to hold no NUL.
    Body {
        command: Command,
        headers: Vec<(String, String)>,
        content_length: Option<usize>,
        scanned: usize,
    },
}

/// Decoder and encoder of STOMP frames. The version decides header escaping;
/// set it with [`Codec::set_version`] once CONNECT/CONNECTED settled it.
#[derive(Debug)]
pub struct Codec {
    limits: Limits,
    version: Version,
    state: State,
    /// EOLs were consumed since the last item was returned.
    saw_heartbeat: bool,
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new(Limits::default())
    }
}

impl Codec {
    /// A codec speaking STOMP 1.2 until told otherwise.
    pub fn new(limits: Limits) -> Self {
        Codec {
            limits,
            version: Version::V1_2,
            state: State::Idle,
            saw_heartbeat: false,
        }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn escapes(&self, command: Command) -> bool {
        self.version >= Version::V1_1 && command.escapes_headers()
    }

    /// Takes one line (without its EOL) off `src`, or `None` if no complete
    /// line is buffered yet. Enforces the line-length limit either way.
    fn take_line(
        &self,
        src: &mut BytesMut,
        strip_cr: bool,
    ) -> Result<Option<BytesMut>, CodecError> {
        let limit = self.limits.max_header_length;
        match memchr::memchr(b'\n', src) {
            Some(end) => {
                let mut line = src.split_to(end + 1);
                line.truncate(end);
                if strip_cr && line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                if line.len() > limit {
                    return Err(CodecError::HeaderTooLong { limit });
                }
                Ok(Some(line))
            }
            // +1 leaves room for the '\r' of a CRLF that is still in flight.
            None if src.len() > limit + 1 => Err(CodecError::HeaderTooLong { limit }),
            None => Ok(None),
        }
    }

    fn parse_header(&self, command: Command, line: &[u8]) -> Result<(String, String), CodecError> {
        let text = std::str::from_utf8(line).map_err(|_| CodecError::InvalidUtf8)?;
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| CodecError::MalformedHeader(text.to_owned()))?;
        if self.escapes(command) {
            Ok((
                unescape(name, self.version)?,
                unescape(value, self.version)?,
            ))
        } else {
            Ok((name.to_owned(), value.to_owned()))
        }
    }

    fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        loop {
            match &mut self.state {
                State::Idle => {
                    // Heart-beats: bare EOLs before a frame.
                    loop {
                        match src.first() {
                            Some(b'\n') => src.advance(1),
                            Some(b'\r') if src.get(1) == Some(&b'\n') => src.advance(2),
                            Some(b'\r') if src.len() == 1 => return Ok(None),
                            _ => break,
                        }
                        self.saw_heartbeat = true;
                    }
                    if src.is_empty() {
                        return Ok(None);
                    }
                    let Some(line) = self.take_line(src, true)? else {
                        return Ok(None);
                    };
                    let name = String::from_utf8_lossy(&line);
                    let command = name
                        .parse::<Command>()
                        .map_err(|e| CodecError::UnknownCommand(e.0))?;
                    self.state = State::Headers {
                        command,
                        headers: Vec::new(),
                        header_bytes: 0,
                    };
                }
                State::Headers { .. } => {
                    // STOMP 1.1 ends lines with LF only and escapes no CR, so
                    // a CR at the end of a 1.1 header is data; 1.2 allows CRLF
                    // and 1.0 peers send it.
                    let strip_cr = self.version != Version::V1_1;
                    let Some(mut line) = self.take_line(src, strip_cr)? else {
                        return Ok(None);
                    };
                    let State::Headers {
                        command,
                        headers,
                        header_bytes,
                    } = &mut self.state
                    else {
                        unreachable!("state checked above")
                    };
                    let command = *command;
                    if line[..] == b"\r"[..] {
                        line.clear();
                    }
                    if line.is_empty() {
                        let headers = std::mem::take(headers);
                        let content_length = content_length(&headers, self.limits)?;
                        self.state = State::Body {
                            command,
                            headers,
                            content_length,
                            scanned: 0,
                        };
                        continue;
                    }
                    *header_bytes += line.len() + 1;
                    if headers.len() >= self.limits.max_headers {
                        return Err(CodecError::TooManyHeaders {
                            limit: self.limits.max_headers,
                        });
                    }
                    if *header_bytes > self.limits.max_frame_size {
                        return Err(CodecError::FrameTooLarge {
                            limit: self.limits.max_frame_size,
                        });
                    }
                    let header = self.parse_header(command, &line)?;
                    if let State::Headers { headers, .. } = &mut self.state {
                        headers.push(header);
                    }
                }
                State::Body {
                    content_length,
                    scanned,
                    ..
                } => {
                    let body_len = match *content_length {
                        Some(n) => {
                            if src.len() <= n {
                                // Grow with the bytes that arrive, not with
                                // what the header claims: a lying
                                // content-length must not reserve memory.
                                src.reserve((n + 1 - src.len()).min(64 * 1024));
                                return Ok(None);
                            }
                            if src[n] != 0 {
                                return Err(CodecError::MissingNul(n));
                            }
                            n
                        }
                        None => match memchr::memchr(0, &src[*scanned..]) {
                            Some(i) => *scanned + i,
                            None => {
                                *scanned = src.len();
                                if *scanned > self.limits.max_frame_size {
                                    return Err(CodecError::FrameTooLarge {
                                        limit: self.limits.max_frame_size,
                                    });
                                }
                                return Ok(None);
                            }
                        },
                    };
                    let body = src.split_to(body_len).freeze();
                    src.advance(1);
                    let State::Body {
                        command, headers, ..
                    } = std::mem::replace(&mut self.state, State::Idle)
                    else {
                        unreachable!("state checked above")
                    };
                    return Ok(Some(Frame {
                        command,
                        headers,
                        body,
                    }));
                }
            }
        }
    }

    fn encode_frame(&self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        let escapes = self.escapes(frame.command);
        dst.reserve(64 + frame.body.len() + frame.headers.len() * 32);
        dst.put_slice(frame.command.as_str().as_bytes());
        dst.put_u8(b'\n');
        for (name, value) in &frame.headers {
            // The encoder owns content-length: it always matches the body.
            if name == "content-length" {
                continue;
            }
            if escapes {
                escape_into(name, self.version, dst);
                dst.put_u8(b':');
                escape_into(value, self.version, dst);
            } else {
                if name.contains(['\n', '\r', ':']) || value.contains(['\n', '\r']) {
                    return Err(CodecError::Unencodable(name.clone(), self.version));
                }
                dst.put_slice(name.as_bytes());
                dst.put_u8(b':');
                dst.put_slice(value.as_bytes());
            }
            dst.put_u8(b'\n');
        }
        if !frame.body.is_empty() {
            dst.put_slice(b"content-length:");
            dst.put_slice(frame.body.len().to_string().as_bytes());
            dst.put_u8(b'\n');
        }
        dst.put_u8(b'\n');
        dst.put_slice(&frame.body);
        dst.put_u8(0);
        Ok(())
    }
}

fn content_length(
    headers: &[(String, String)],
    limits: Limits,
) -> Result<Option<usize>, CodecError> {
    let Some((_, v)) = headers.iter().find(|(k, _)| k == "content-length") else {
        return Ok(None);
    };
    let n: usize = v
        .trim()
        .parse()
        .map_err(|_| CodecError::InvalidContentLength(v.clone()))?;
    if n > limits.max_frame_size {
        return Err(CodecError::FrameTooLarge {
            limit: limits.max_frame_size,
        });
    }
    Ok(Some(n))
}

/// Undoes STOMP header escaping; undefined sequences are fatal (spec 1.1/1.2).
fn unescape(s: &str, version: Version) -> Result<String, CodecError> {
    if !s.contains('\\') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('c') => out.push(':'),
            Some('r') if version >= Version::V1_2 => out.push('\r'),
            _ => return Err(CodecError::InvalidEscape(s.to_owned())),
        }
    }
    Ok(out)
}

fn escape_into(s: &str, version: Version, dst: &mut BytesMut) {
    for b in s.bytes() {
        match b {
            b'\\' => dst.put_slice(b"\\\\"),
            b'\n' => dst.put_slice(b"\\n"),
            b':' => dst.put_slice(b"\\c"),
            b'\r' if version >= Version::V1_2 => dst.put_slice(b"\\r"),
            _ => dst.put_u8(b),
        }
    }
}

impl Decoder for Codec {
    type Item = Transmission;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Transmission>, CodecError> {
        match self.decode_frame(src)? {
            Some(frame) => {
                self.saw_heartbeat = false;
                Ok(Some(Transmission::Frame(frame)))
            }
            None if std::mem::take(&mut self.saw_heartbeat) => Ok(Some(Transmission::HeartBeat)),
            None => Ok(None),
        }
    }
}

impl Encoder<&Frame> for Codec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.encode_frame(frame, dst)
    }
}

impl Encoder<Frame> for Codec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.encode_frame(&frame, dst)
    }
}

impl Encoder<HeartBeat> for Codec {
    type Error = CodecError;

    fn encode(&mut self, _: HeartBeat, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.put_u8(b'\n');
        Ok(())
    }
}

impl Encoder<Transmission> for Codec {
    type Error = CodecError;

    fn encode(&mut self, item: Transmission, dst: &mut BytesMut) -> Result<(), CodecError> {
        match item {
            Transmission::Frame(f) => self.encode_frame(&f, dst),
            Transmission::HeartBeat => self.encode(HeartBeat, dst),
        }
    }
}

/// Encodes one frame to bytes (for tests and tools that do not use `Framed`).
pub fn encode_to_bytes(frame: &Frame, version: Version) -> Result<Bytes, CodecError> {
    let mut codec = Codec::default();
    codec.set_version(version);
    let mut buf = BytesMut::new();
    codec.encode_frame(frame, &mut buf)?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut Codec, bytes: &[u8]) -> Result<Vec<Transmission>, CodecError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(t) = codec.decode(&mut buf)? {
            out.push(t);
        }
        Ok(out)
    }

    fn frames(bytes: &[u8]) -> Vec<Frame> {
        decode_all(&mut Codec::default(), bytes)
            .unwrap()
            .into_iter()
            .filter_map(|t| match t {
                Transmission::Frame(f) => Some(f),
                Transmission::HeartBeat => None,
            })
            .collect()
    }

    #[test]
    fn decodes_a_simple_frame_with_crlf_and_trailing_eols() {
        let f = frames(b"\r\n\nSEND\r\ndestination:/queue/a\r\n\r\nhello\0\n\n");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].command, Command::Send);
        assert_eq!(f[0].header("destination"), Some("/queue/a"));
        assert_eq!(&f[0].body[..], b"hello");
    }

    #[test]
    fn content_length_allows_nul_in_body() {
        let f = frames(b"SEND\ncontent-length:3\n\na\0b\0");
        assert_eq!(&f[0].body[..], b"a\0b");
    }

    #[test]
    fn content_length_must_be_followed_by_nul() {
        let err = decode_all(&mut Codec::default(), b"SEND\ncontent-length:1\n\nab\0").unwrap_err();
        assert!(matches!(err, CodecError::MissingNul(1)));
    }

    #[test]
    fn unescapes_1_2_headers_but_not_connect() {
        let f = frames(b"SEND\na\\cb:x\\ny\\\\z\\r\n\n\0CONNECT\nlogin:a\\cb\n\n\0");
        assert_eq!(f[0].headers[0], ("a:b".into(), "x\ny\\z\r".into()));
        assert_eq!(f[1].header("login"), Some("a\\cb"));
    }

    #[test]
    fn version_1_0_does_not_unescape_and_1_1_rejects_backslash_r() {
        let mut c = Codec::default();
        c.set_version(Version::V1_0);
        let t = decode_all(&mut c, b"SEND\na:b\\n\n\n\0").unwrap();
        assert_eq!(
            t,
            vec![Transmission::Frame(
                Frame::new(Command::Send).with_header("a", "b\\n")
            )]
        );
        let mut c = Codec::default();
        c.set_version(Version::V1_1);
        assert!(matches!(
            decode_all(&mut c, b"SEND\na:b\\r\n\n\0"),
            Err(CodecError::InvalidEscape(_))
        ));
    }

    #[test]
    fn rejects_garbage() {
        for (input, what) in [
            (&b"HELLO\n\n\0"[..], "command"),
            (b"SEND\nnocolon\n\n\0", "header"),
            (b"SEND\na:\\q\n\n\0", "escape"),
            (b"SEND\ncontent-length:x\n\n\0", "content-length"),
            (b"SEND\na:\xff\n\n\0", "utf8"),
        ] {
            assert!(
                decode_all(&mut Codec::default(), input).is_err(),
                "{what} accepted"
            );
        }
    }

    #[test]
    fn enforces_limits_before_buffering() {
        let limits = Limits {
            max_frame_size: 10,
            max_headers: 2,
            max_header_length: 20,
        };
        let mut c = Codec::new(limits);
        assert!(matches!(
            decode_all(&mut c, b"SEND\ncontent-length:11\n\n"),
            Err(CodecError::FrameTooLarge { limit: 10 })
        ));
        let mut c = Codec::new(limits);
        assert!(matches!(
            decode_all(&mut c, b"SEND\n\n0123456789abc"),
            Err(CodecError::FrameTooLarge { .. })
        ));
        let mut c = Codec::new(limits);
        assert!(matches!(
            decode_all(&mut c, b"SEND\na:1\nb:2\nc:3\n"),
            Err(CodecError::TooManyHeaders { limit: 2 })
        ));
        // An endless line without EOL is refused as soon as it passes the limit.
        let mut c = Codec::new(limits);
        assert!(matches!(
            decode_all(&mut c, b"SENDSENDSENDSENDSENDSEND"),
            Err(CodecError::HeaderTooLong { limit: 20 })
        ));
    }

    #[test]
    fn heartbeats_are_reported_when_no_frame_follows() {
        let mut c = Codec::default();
        assert_eq!(
            decode_all(&mut c, b"\n\r\n").unwrap(),
            vec![Transmission::HeartBeat]
        );
        // A partial frame after a heart-beat still reports the heart-beat.
        assert_eq!(
            decode_all(&mut c, b"\nSEN").unwrap(),
            vec![Transmission::HeartBeat]
        );
    }

    #[test]
    fn encoder_escapes_per_version_and_sets_content_length() {
        let f = Frame::new(Command::Message)
            .with_header("k:1", "v\n\r\\")
            .with_header("content-length", "999")
            .with_body(&b"ab"[..]);
        let b = encode_to_bytes(&f, Version::V1_2).unwrap();
        assert_eq!(
            &b[..],
            b"MESSAGE\nk\\c1:v\\n\\r\\\\\ncontent-length:2\n\nab\0"
        );
        let b = encode_to_bytes(&f, Version::V1_1).unwrap();
        assert_eq!(
            &b[..],
            b"MESSAGE\nk\\c1:v\\n\r\\\\\ncontent-length:2\n\nab\0"
        );
        assert!(matches!(
            encode_to_bytes(&f, Version::V1_0),
            Err(CodecError::Unencodable(..))
        ));
        let connected = Frame::new(Command::Connected).with_header("version", "1.2");
        let b = encode_to_bytes(&connected, Version::V1_2).unwrap();
        assert_eq!(&b[..], b"CONNECTED\nversion:1.2\n\n\0");
    }
}
