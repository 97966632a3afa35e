//! STOMP 1.0/1.1/1.2: frame types and the wire codec.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use amq_broker::stomp::{Codec, Command, Frame, Transmission};
//! use futures::{SinkExt, StreamExt};
//! use tokio_util::codec::Framed;
//!
//! let tcp = tokio::net::TcpStream::connect("127.0.0.1:61613").await?;
//! tcp.set_nodelay(true)?;
//! let mut conn = Framed::new(tcp, Codec::default());
//! conn.send(Frame::new(Command::Connect).with_header("accept-version", "1.2")).await?;
//! if let Some(Transmission::Frame(f)) = conn.next().await.transpose()? {
//!     assert_eq!(f.command, Command::Connected);
//! }
//! # Ok(()) }
//! ```

mod codec;
mod convert;
mod frame;

pub use codec::{encode_to_bytes, Codec, CodecError, Limits};
pub use convert::{message_frame, message_from_send, parse_destination};
pub use frame::{Command, Frame, HeartBeat, Transmission, UnknownCommand, Version};
