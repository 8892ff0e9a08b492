//! Fuzzes the WAV path: header validation, symphonia decoding and the log-mel of whatever decodes.
//! Any input must give `Ok` or an error naming the file, never a panic.
#![no_main]

use std::path::Path;

use asdsweep_shared::audio::{decode_wav_bytes, parse_wav_header};
use asdsweep_shared::logmel::{LogMel, LogMelConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.wav");
    let header = parse_wav_header(data, path);
    match decode_wav_bytes(data.to_vec(), path) {
        Ok(audio) => {
            assert!(header.is_ok(), "decoded a file whose header was rejected");
            if let Ok(mut lm) = LogMel::new(LogMelConfig::default(), audio.sample_rate) {
                let out = lm
                    .compute(&audio.samples)
                    .expect("non-empty decoded audio has a log-mel");
                assert_eq!(out.dim().1, 1 + audio.samples.len() / 512);
            }
        }
        Err(e) => assert!(
            e.to_string().contains("fuzz.wav"),
            "error does not name the file: {e}"
        ),
    }
});
