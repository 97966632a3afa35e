//! Property tests of the STOMP codec: what is encoded decodes to the same
//! frames however the bytes are split, and no input makes the decoder panic.

use amq_broker::stomp::{Codec, Command, Frame, Limits, Transmission, Version};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

fn command() -> impl Strategy<Value = Command> {
    proptest::sample::select(Command::ALL.to_vec())
}

fn version() -> impl Strategy<Value = Version> {
    proptest::sample::select(Version::ALL.to_vec())
}

/// Header text that every version can carry for `command` (1.0 and the
/// unescaped CONNECT family cannot carry EOLs or colons in names).
fn header(escaped: bool) -> BoxedStrategy<(String, String)> {
    if escaped {
        ("[a-z:\\\\\n\r é-]{1,12}", "[ -~\n\r\\\\é]{0,24}")
            .prop_filter("content-length is the encoder's", |(k, _)| {
                k != "content-length"
            })
            .boxed()
    } else {
        ("[a-z-]{1,12}", "[ -~é]{0,24}")
            .prop_filter("content-length is the encoder's", |(k, _)| {
                k != "content-length"
            })
            .boxed()
    }
}

fn frame_for(version: Version) -> impl Strategy<Value = Frame> {
    command().prop_flat_map(move |command| {
        let escaped = version >= Version::V1_1 && command.escapes_headers();
        (
            proptest::collection::vec(header(escaped), 0..8),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(move |(headers, body)| Frame {
                command,
                headers,
                body: Bytes::from(body),
            })
    })
}

fn decode_in_chunks(
    codec: &mut Codec,
    bytes: &[u8],
    cuts: &[usize],
) -> Result<Vec<Frame>, amq_broker::stomp::CodecError> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut start = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(bytes.len());
    points.sort_unstable();
    for end in points {
        buf.extend_from_slice(&bytes[start..end]);
        start = end;
        while let Some(t) = codec.decode(&mut buf)? {
            if let Transmission::Frame(f) = t {
                out.push(f);
            }
        }
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_roundtrips(
        (version, frames) in version().prop_flat_map(|v| (Just(v), proptest::collection::vec(frame_for(v), 1..5))),
        heartbeats in proptest::collection::vec(0usize..3, 5),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut enc = Codec::default();
        enc.set_version(version);
        let mut wire = BytesMut::new();
        for (i, f) in frames.iter().enumerate() {
            for _ in 0..heartbeats[i % heartbeats.len()] {
                enc.encode(amq_broker::stomp::HeartBeat, &mut wire).unwrap();
            }
            enc.encode(f, &mut wire).unwrap();
        }
        let mut dec = Codec::default();
        dec.set_version(version);
        let mut got = decode_in_chunks(&mut dec, &wire, &cuts).unwrap();
        // The encoder adds content-length for every body; the rest is as sent.
        for f in &mut got {
            let len = f.body.len().to_string();
            let added: Vec<_> = f.headers.iter().filter(|(k, _)| k == "content-length").collect();
            prop_assert!(f.body.is_empty() || added == [&("content-length".to_owned(), len)]);
            f.headers.retain(|(k, _)| k != "content-length");
        }
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        version in version(),
    ) {
        let mut dec = Codec::new(Limits { max_frame_size: 256, max_headers: 8, max_header_length: 64 });
        dec.set_version(version);
        let _ = decode_in_chunks(&mut dec, &bytes, &cuts);
    }

    #[test]
    fn decoder_never_panics_on_mutated_frames(
        frame in frame_for(Version::V1_2),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut wire = amq_broker::stomp::encode_to_bytes(&frame, Version::V1_2).unwrap().to_vec();
        for (pos, byte) in flips {
            let n = wire.len();
            wire[pos % n] = byte;
        }
        let mut dec = Codec::new(Limits { max_frame_size: 256, max_headers: 8, max_header_length: 64 });
        let _ = decode_in_chunks(&mut dec, &wire, &cuts);
    }
}
