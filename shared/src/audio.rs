//! WAV decoding into f32 mono exactly as librosa loads audio, WAV writing, and resampling.
//!
//! Every WAV that users have is read: PCM 8/16/24/32-bit, IEEE float 32/64-bit, any number
//! of channels, any sample rate. The RIFF structure is validated first (so a truncated or
//! corrupt file is an error naming the file and the problem, never a silently shorter
//! signal); the samples are then decoded with symphonia, scaled as libsndfile/librosa do
//! (`i16 / 2^15`, `i24 / 2^23`, `i32 / 2^31`, `(u8 - 128) / 2^7`, floats as they are) and
//! mixed to mono as the mean of the channels.
//!
//! Resampling (only where a spec asks for a target rate) uses rubato's synchronous
//! FFT resampler [`rubato::FftFixedIn`]: the spectrum is cut by an anti-aliasing
//! low-pass at about 95 % of the lower Nyquist frequency, with a stop-band attenuation
//! that is far below the −100 dB floor that the log-mel comparisons use.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use symphonia::core::audio::{AudioBuffer, AudioBufferRef, Signal};
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::conv::IntoSample;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use symphonia::core::sample::Sample;

/// The most channels a WAV may declare before it is treated as corrupt.
pub const MAX_CHANNELS: u16 = 64;

/// Everything that can go wrong reading, writing or resampling audio; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The file could not be read or written at all.
    #[error("{}: cannot access file: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// The bytes are not a RIFF/WAVE file, or its chunks contradict each other.
    #[error("{}: not a valid WAV file: {problem}", path.display())]
    NotWav {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The data chunk claims more bytes than the file holds.
    #[error("{}: truncated WAV: the data chunk declares {declared} bytes but only {present} are present", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header declares.
        declared: u64,
        /// Bytes actually in the file after the chunk header.
        present: u64,
    },
    /// A well-formed WAV in an encoding that asdsweep does not read (e.g. ADPCM).
    #[error("{}: unsupported WAV encoding: {problem}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Which encoding.
        problem: String,
    },
    /// symphonia failed on the sample data.
    #[error("{}: cannot decode audio: {problem}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// symphonia's message.
        problem: String,
    },
    /// The file holds no sample frames.
    #[error("{}: the WAV holds no audio samples", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Resampling failed or was asked for an impossible rate.
    #[error("resampling from {from} Hz to {to} Hz failed: {problem}")]
    Resample {
        /// Source rate.
        from: u32,
        /// Target rate.
        to: u32,
        /// rubato's message.
        problem: String,
    },
    /// Resampling by a ratio failed or was asked for an impossible ratio.
    #[error("resampling by a ratio of {ratio} failed: {problem}")]
    ResampleRatio {
        /// Output rate over input rate.
        ratio: f64,
        /// rubato's message.
        problem: String,
    },
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, AudioError>;

/// How the samples of a WAV are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleFormat {
    /// Integer PCM (8-bit unsigned, 16/24/32-bit signed).
    Pcm,
    /// IEEE float (32 or 64 bit).
    Float,
}

/// What the RIFF header of a WAV says, validated against the file's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WavInfo {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Number of interleaved channels.
    pub channels: u16,
    /// Bits per stored sample.
    pub bits_per_sample: u16,
    /// Integer or float samples.
    pub format: SampleFormat,
    /// Number of sample frames (one sample per channel each).
    pub frames: u64,
}

impl WavInfo {
    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.frames as f64 / f64::from(self.sample_rate)
    }
}

/// A decoded signal: f32 mono samples in [-1, 1] (for PCM) at its native rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Mono samples (mean of the channels).
    pub samples: Vec<f32>,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channel count of the file before the mix-down.
    pub channels: u16,
}

fn not_wav(path: &Path, problem: impl Into<String>) -> AudioError {
    AudioError::NotWav {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Validates the RIFF/WAVE structure of `bytes` (named `path` in errors) and returns its header.
///
/// Rejects: a missing RIFF/WAVE signature, a missing `fmt ` or `data` chunk, a data chunk
/// longer than the file (truncation), a data length that is not a whole number of frames,
/// zero channels or rate, and encodings other than integer PCM and IEEE float.
pub fn parse_wav_header(bytes: &[u8], path: &Path) -> Result<WavInfo> {
    parse_wav(bytes, path).map(|(info, _)| info)
}

/// [`parse_wav_header`], with where the sample data lies in `bytes`.
fn parse_wav(bytes: &[u8], path: &Path) -> Result<(WavInfo, std::ops::Range<usize>)> {
    if bytes.len() < 12 {
        return Err(not_wav(
            path,
            format!("only {} bytes, shorter than a RIFF header", bytes.len()),
        ));
    }
    if &bytes[0..4] != b"RIFF" {
        return Err(not_wav(path, "missing the RIFF signature"));
    }
    if &bytes[8..12] != b"WAVE" {
        return Err(not_wav(path, "RIFF file is not of form WAVE"));
    }
    let mut pos = 12usize;
    let mut fmt: Option<(u16, u16, u32, u16, u16)> = None;
    let mut data: Option<(u64, u64)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u64::from(u32_at(bytes, pos + 4));
        let body = pos + 8;
        let present = (bytes.len() - body) as u64;
        if id == b"data" {
            if size > present {
                return Err(AudioError::Truncated {
                    path: path.to_path_buf(),
                    declared: size,
                    present,
                });
            }
            data = Some((body as u64, size));
            if fmt.is_some() {
                break;
            }
        } else if id == b"fmt " {
            if size < 16 || size > present {
                return Err(not_wav(
                    path,
                    format!("fmt chunk of {size} bytes is malformed"),
                ));
            }
            let mut tag = u16_at(bytes, body);
            let channels = u16_at(bytes, body + 2);
            let rate = u32_at(bytes, body + 4);
            let align = u16_at(bytes, body + 12);
            let bits = u16_at(bytes, body + 14);
            if tag == 0xFFFE {
                if size < 40 {
                    return Err(not_wav(
                        path,
                        "WAVE_FORMAT_EXTENSIBLE fmt chunk is shorter than 40 bytes",
                    ));
                }
                tag = u16_at(bytes, body + 24);
            }
            fmt = Some((tag, channels, rate, align, bits));
        } else if size > present {
            return Err(not_wav(
                path,
                format!(
                    "chunk '{}' declares {size} bytes but only {present} remain",
                    String::from_utf8_lossy(id)
                ),
            ));
        }
        // Chunks are padded to an even size.
        pos = body.saturating_add(size as usize + (size as usize & 1));
        if data.is_some() && fmt.is_some() {
            break;
        }
    }
    let (tag, channels, sample_rate, align, bits) =
        fmt.ok_or_else(|| not_wav(path, "no fmt chunk"))?;
    let (_, data_len) = data.ok_or_else(|| not_wav(path, "no data chunk"))?;
    let format = match (tag, bits) {
        (1, 8 | 16 | 24 | 32) => SampleFormat::Pcm,
        (3, 32 | 64) => SampleFormat::Float,
        (1 | 3, _) => {
            return Err(AudioError::Unsupported {
                path: path.to_path_buf(),
                problem: format!("{bits}-bit {}", if tag == 1 { "PCM" } else { "float" }),
            });
        }
        _ => {
            return Err(AudioError::Unsupported {
                path: path.to_path_buf(),
                problem: format!("format tag 0x{tag:04x} (only PCM and IEEE float are read)"),
            });
        }
    };
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(not_wav(path, format!("{channels} channels declared")));
    }
    if sample_rate == 0 {
        return Err(not_wav(path, "sample rate 0"));
    }
    let frame_bytes = u64::from(channels) * u64::from(bits / 8);
    if u64::from(align) != frame_bytes {
        return Err(not_wav(
            path,
            format!("block align {align} does not match {channels} channels of {bits} bits"),
        ));
    }
    if data_len % frame_bytes != 0 {
        return Err(AudioError::Truncated {
            path: path.to_path_buf(),
            declared: data_len,
            present: data_len - data_len % frame_bytes,
        });
    }
    let (data_at, _) = data.expect("invariant: checked above");
    let frames = data_len / frame_bytes;
    let start = data_at as usize;
    Ok((
        WavInfo {
            sample_rate,
            channels,
            bits_per_sample: bits,
            format,
            frames,
        },
        start..start + (frames * frame_bytes) as usize,
    ))
}

/// Reads and validates only the header of the WAV at `path` (whole-file size checks included).
pub fn read_wav_info(path: &Path) -> Result<WavInfo> {
    let bytes = std::fs::read(path).map_err(|source| AudioError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_wav_header(&bytes, path)
}

/// Decodes the WAV at `path` into f32 mono at its native rate, as `librosa.load(sr=None, mono=True)`.
pub fn decode_wav_file(path: &Path) -> Result<Audio> {
    let bytes = std::fs::read(path).map_err(|source| AudioError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_wav_bytes(bytes, path)
}

/// Decodes the WAV at `path` into f32 mono at `rate` Hz, resampled ([`resample`]) when
/// stored at another rate.
pub fn decode_wav_file_at(path: &Path, rate: u32) -> Result<Vec<f32>> {
    let audio = decode_wav_file(path)?;
    if audio.sample_rate == rate {
        return Ok(audio.samples);
    }
    resample(&audio.samples, audio.sample_rate, rate)
}

/// Decodes WAV `bytes` (named `path` in errors) into f32 mono at the native rate.
///
/// 16-bit PCM, the datasets' format, is converted here straight from the validated data chunk
/// (symphonia's scaling, s / 32768, and its channel mean: the same bits, tested against
/// symphonia's path, at a fraction of the cost); every other encoding goes through symphonia.
pub fn decode_wav_bytes(bytes: Vec<u8>, path: &Path) -> Result<Audio> {
    let (info, data) = parse_wav(&bytes, path)?;
    if info.frames == 0 {
        return Err(AudioError::Empty {
            path: path.to_path_buf(),
        });
    }
    if info.format == SampleFormat::Pcm && info.bits_per_sample == 16 {
        return Ok(Audio {
            samples: pcm16_mono(&bytes[data], usize::from(info.channels)),
            sample_rate: info.sample_rate,
            channels: info.channels,
        });
    }
    decode_with_symphonia(bytes, path, info)
}

/// Interleaved little-endian 16-bit samples of `channels` channels as f32 mono, scaled and
/// averaged exactly as symphonia's path below does ([`mix_down`]): s / 32768, and for
/// several channels their sum in channel order divided by the count.
fn pcm16_mono(data: &[u8], channels: usize) -> Vec<f32> {
    let sample = |b: &[u8]| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0;
    if channels == 1 {
        return data.chunks_exact(2).map(sample).collect();
    }
    let n = channels as f32;
    data.chunks_exact(2 * channels)
        .map(|frame| frame.chunks_exact(2).fold(0.0f32, |acc, b| acc + sample(b)) / n)
        .collect()
}

/// The symphonia path of [`decode_wav_bytes`] for encodings other than 16-bit PCM.
fn decode_with_symphonia(bytes: Vec<u8>, path: &Path, info: WavInfo) -> Result<Audio> {
    let decode_err = |e: SymphoniaError| AudioError::Decode {
        path: path.to_path_buf(),
        problem: e.to_string(),
    };
    let mss = MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("wav");
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(decode_err)?;
    let mut reader = probed.format;
    let track = reader.default_track().ok_or_else(|| AudioError::Decode {
        path: path.to_path_buf(),
        problem: "no audio track".into(),
    })?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(decode_err)?;
    let channels = usize::from(info.channels);
    let mut samples: Vec<f32> = Vec::with_capacity(info.frames as usize);
    loop {
        let packet = match reader.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(e) => return Err(decode_err(e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = decoder.decode(&packet).map_err(decode_err)?;
        let spec = *decoded.spec();
        if spec.channels.count() != channels {
            return Err(AudioError::Decode {
                path: path.to_path_buf(),
                problem: format!(
                    "decoder gave {} channels, header says {channels}",
                    spec.channels.count()
                ),
            });
        }
        mix_down(&decoded, &mut samples);
    }
    if samples.len() as u64 != info.frames {
        return Err(AudioError::Decode {
            path: path.to_path_buf(),
            problem: format!(
                "decoded {} frames, header declares {}",
                samples.len(),
                info.frames
            ),
        });
    }
    Ok(Audio {
        samples,
        sample_rate: info.sample_rate,
        channels: info.channels,
    })
}

/// Appends the channel mean of one decoded packet to `out`, converting samples to f32 as symphonia scales them.
fn mix_down(decoded: &AudioBufferRef<'_>, out: &mut Vec<f32>) {
    fn mix<S: Sample + IntoSample<f32>>(buf: &AudioBuffer<S>, out: &mut Vec<f32>) {
        let channels = buf.spec().channels.count();
        let start = out.len();
        if channels == 1 {
            out.extend(buf.chan(0).iter().map(|&s| -> f32 { s.into_sample() }));
            return;
        }
        // Channel mean in f32, channel by channel, as numpy's mean over axis 0.
        out.resize(start + buf.frames(), 0.0);
        for c in 0..channels {
            for (o, &s) in out[start..].iter_mut().zip(buf.chan(c)) {
                *o += IntoSample::<f32>::into_sample(s);
            }
        }
        let n = channels as f32;
        out[start..].iter_mut().for_each(|v| *v /= n);
    }
    match decoded {
        AudioBufferRef::U8(b) => mix(b, out),
        AudioBufferRef::U16(b) => mix(b, out),
        AudioBufferRef::U24(b) => mix(b, out),
        AudioBufferRef::U32(b) => mix(b, out),
        AudioBufferRef::S8(b) => mix(b, out),
        AudioBufferRef::S16(b) => mix(b, out),
        AudioBufferRef::S24(b) => mix(b, out),
        AudioBufferRef::S32(b) => mix(b, out),
        AudioBufferRef::F32(b) => mix(b, out),
        AudioBufferRef::F64(b) => mix(b, out),
    }
}

/// Encodes mono or interleaved f32 samples as a 16-bit PCM WAV (clipped to [-1, 1]).
pub fn encode_wav_pcm16(interleaved: &[f32], sample_rate: u32, channels: u16) -> Vec<u8> {
    let data_len = (interleaved.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + interleaved.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2 * u32::from(channels)).to_le_bytes());
    out.extend_from_slice(&(2 * channels).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for &x in interleaved {
        let v = (x.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes `interleaved` as a 16-bit PCM WAV at `path` (through a temporary file, so no partial file remains).
pub fn write_wav_pcm16(
    path: &Path,
    interleaved: &[f32],
    sample_rate: u32,
    channels: u16,
) -> Result<()> {
    write_atomically(path, &encode_wav_pcm16(interleaved, sample_rate, channels)).map_err(
        |source| AudioError::Io {
            path: path.to_path_buf(),
            source,
        },
    )
}

/// Writes `bytes` to `path` through a sibling temporary file and a rename, so readers never see half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.partial"));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Resamples mono `samples` from `from` Hz to `to` Hz with rubato's FFT resampler.
///
/// The output has `ceil(len · to / from)` samples; the resampler's reported delay is
/// removed, which leaves a constant lag of at most one input sample (e.g. 21 µs at 48 kHz),
/// irrelevant for spectral features. `from == to` returns the input unchanged.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    let fail = |problem: String| AudioError::Resample { from, to, problem };
    if from == 0 || to == 0 {
        return Err(fail("rates must be positive".into()));
    }
    if from == to {
        return Ok(samples.to_vec());
    }
    let mut r = rubato::FftFixedIn::<f32>::new(from as usize, to as usize, 1024, 2, 1)
        .map_err(|e| fail(e.to_string()))?;
    let expected = (samples.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
    let delay = rubato::Resampler::output_delay(&r);
    drive(&mut r, samples, delay, expected).map_err(|e| fail(e.to_string()))
}

/// Resamples mono `samples` by `ratio` (output rate over input rate, any positive number)
/// with rubato's windowed-sinc resampler (128 taps, cut-off at 0.95 of the lower Nyquist
/// frequency, the nearest of 2,048 sub-sample phases, one dot product per output: on the
/// pitch-shift fixture 43 dB from librosa's soxr, as linear interpolation between 1,024
/// phases was, against 45.5 for 256 taps with cubic interpolation at eight times the work;
/// the filter is [`SincTable`]'s): `ceil(len · ratio)`
/// samples, output k at input position k/ratio, as librosa's `resample` returns them.
/// Used where the rates are not integers (the pitch-shift augmentation).
pub fn resample_by_ratio(samples: &[f32], ratio: f64) -> Result<Vec<f32>> {
    let fail = |problem: String| AudioError::ResampleRatio { ratio, problem };
    if !(ratio.is_finite() && ratio > 0.0) {
        return Err(fail("the ratio must be a positive number".into()));
    }
    let mut r = rubato::SincFixedIn::<f32>::new_with_interpolator(
        ratio,
        1.0,
        rubato::SincInterpolationType::Nearest,
        Box::new(SincTable::for_ratio(ratio)),
        1024,
        1,
    )
    .map_err(|e| fail(e.to_string()))?;
    let expected = (samples.len() as f64 * ratio).ceil() as usize;
    // rubato puts output j at input position (j + 1)·t − 1, t = 1/ratio (whatever
    // `output_delay` reports; measured against an analytic sine in the tests). With `pad`
    // zeros before the input and the first `skip` outputs dropped, output k lies at
    // k·t + (skip + 1)·t − 1 − pad: the first `skip` that brings that offset within a
    // thousandth of a sample of zero puts every output where librosa's soxr puts it.
    let t = 1.0 / ratio;
    let offset = |skip: usize| (skip + 1) as f64 * t - 1.0;
    let skip = (0..16_384)
        .find(|&d| (offset(d) - offset(d).round()).abs() < 1e-3)
        .unwrap_or(0);
    let pad = offset(skip).round().max(0.0) as usize;
    let padded: Vec<f32> = std::iter::repeat_n(0.0, pad)
        .chain(samples.iter().copied())
        .collect();
    drive(&mut r, &padded, skip, expected).map_err(|e| fail(e.to_string()))
}

/// The windowed-sinc filter of [`resample_by_ratio`] for one cutoff: rubato's own table (128
/// taps, Blackman–Harris², 2,048 phases), read out of its scalar interpolator once — each
/// tap is that interpolator's response to a unit impulse, so the values are exactly
/// rubato's — and shared, since the pitch-shift views resample every clip by the same
/// twelve ratios. Its dot product keeps 32 partial sums and adds them up pairwise, so it runs
/// at the multiplier's throughput where rubato's AVX one waits on one accumulator for every
/// tap (a third less time for the views), and uses no fused multiply-add, so it gives the same bits on any CPU.
#[derive(Clone)]
struct SincTable(Arc<TableValues>);

struct TableValues {
    /// `PHASES` rows of `TAPS` values, in rubato's order.
    values: Vec<f32>,
}

impl SincTable {
    const TAPS: usize = 128;
    const PHASES: usize = 2048;
    /// Tables kept at most (a megabyte each); the cache starts over beyond.
    const KEPT: usize = 32;

    fn for_ratio(ratio: f64) -> SincTable {
        static TABLES: OnceLock<Mutex<HashMap<u32, SincTable>>> = OnceLock::new();
        // rubato narrows the pass band to the output's Nyquist frequency when downsampling.
        let cutoff = if ratio >= 1.0 {
            0.95
        } else {
            0.95 * ratio as f32
        };
        let mut tables = TABLES
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(t) = tables.get(&cutoff.to_bits()) {
            return t.clone();
        }
        let table = Self::read_out(cutoff);
        if tables.len() >= Self::KEPT {
            tables.clear();
        }
        tables.insert(cutoff.to_bits(), table.clone());
        table
    }

    /// rubato's table for `cutoff`, tap by tap from its scalar interpolator.
    fn read_out(cutoff: f32) -> SincTable {
        use rubato::sinc_interpolator::{ScalarInterpolator, SincInterpolator};
        let (taps, phases) = (Self::TAPS, Self::PHASES);
        let rubato = ScalarInterpolator::<f32>::new(
            taps,
            phases,
            cutoff,
            rubato::WindowFunction::BlackmanHarris2,
        );
        // An impulse at `taps`: the product starting at `taps − j` reads it at tap j only.
        let mut impulse = vec![0.0f32; 2 * taps + 1];
        impulse[taps] = 1.0;
        let values = (0..phases)
            .flat_map(|phase| (0..taps).map(move |j| (phase, j)))
            .map(|(phase, j)| rubato.get_sinc_interpolated(&impulse, taps - j, phase))
            .collect();
        SincTable(Arc::new(TableValues { values }))
    }

    /// Phase `phase`'s taps.
    fn taps(&self, phase: usize) -> &[f32] {
        &self.0.values[phase * Self::TAPS..(phase + 1) * Self::TAPS]
    }
}

/// Σ wave[i] · taps[i] over `SincTable::TAPS` values: four running sums of eight lanes each
/// (lane l of sum j takes i = 32c + 8j + l), the products rounded before each addition, then
/// the sums added lane by lane, (s0 + s1) + (s2 + s3), and the eight lanes pairwise.
fn dot_portable(wave: &[f32], taps: &[f32]) -> f32 {
    let (wave, taps) = (&wave[..SincTable::TAPS], &taps[..SincTable::TAPS]);
    let mut acc = [[0.0f32; 8]; 4];
    for (w, t) in wave.chunks_exact(32).zip(taps.chunks_exact(32)) {
        for (j, sum) in acc.iter_mut().enumerate() {
            for (l, s) in sum.iter_mut().enumerate() {
                *s += w[8 * j + l] * t[8 * j + l];
            }
        }
    }
    let mut lanes = [0.0f32; 8];
    for (l, x) in lanes.iter_mut().enumerate() {
        *x = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
    }
    add_lanes(lanes)
}

/// The eight lanes of a dot product added pairwise: (l0 + l4) … then halves again.
fn add_lanes(l: [f32; 8]) -> f32 {
    let q = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    (q[0] + q[2]) + (q[1] + q[3])
}

/// [`dot_portable`] in AVX registers, operation for operation (the same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn dot_avx(wave: &[f32], taps: &[f32]) -> f32 {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };
    let (wave, taps) = (&wave[..SincTable::TAPS], &taps[..SincTable::TAPS]);
    let mut acc: [__m256; 4] = [_mm256_setzero_ps(); 4];
    for (w, t) in wave.chunks_exact(32).zip(taps.chunks_exact(32)) {
        for (j, sum) in acc.iter_mut().enumerate() {
            // SAFETY: each chunk holds 32 values, so 8 from 8j (j < 4) are in bounds.
            let product = unsafe {
                _mm256_mul_ps(
                    _mm256_loadu_ps(w.as_ptr().add(8 * j)),
                    _mm256_loadu_ps(t.as_ptr().add(8 * j)),
                )
            };
            *sum = _mm256_add_ps(*sum, product);
        }
    }
    let total = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds exactly eight f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), total) };
    add_lanes(lanes)
}

impl rubato::sinc_interpolator::SincInterpolator<f32> for SincTable {
    fn get_sinc_interpolated(&self, wave: &[f32], index: usize, subindex: usize) -> f32 {
        let (wave, taps) = (&wave[index..], self.taps(subindex));
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX, checked just above.
            return unsafe { dot_avx(wave, taps) };
        }
        dot_portable(wave, taps)
    }

    fn len(&self) -> usize {
        Self::TAPS
    }

    fn nbr_sincs(&self) -> usize {
        Self::PHASES
    }
}

/// Feeds `samples` through `r` in its chunks, flushes it, drops its first `skip` outputs
/// (its delay) and returns exactly `expected` samples (zero-padded if it gave fewer).
fn drive<R: rubato::Resampler<f32>>(
    r: &mut R,
    samples: &[f32],
    skip: usize,
    expected: usize,
) -> std::result::Result<Vec<f32>, rubato::ResampleError> {
    let mut out: Vec<f32> = Vec::with_capacity(expected + skip + 2048);
    let mut pos = 0;
    while pos + r.input_frames_next() <= samples.len() {
        let n = r.input_frames_next();
        let o = r.process(&[&samples[pos..pos + n]], None)?;
        out.extend_from_slice(&o[0]);
        pos += n;
    }
    if pos < samples.len() {
        let o = r.process_partial(Some(&[&samples[pos..]]), None)?;
        out.extend_from_slice(&o[0]);
    }
    while out.len() < expected + skip {
        let o = r.process_partial(None::<&[&[f32]]>, None)?;
        if o[0].is_empty() {
            break;
        }
        out.extend_from_slice(&o[0]);
    }
    out.drain(..skip.min(out.len()));
    out.resize(expected, 0.0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm16_is_read_to_the_same_bits_as_through_symphonia() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
        for channels in [1u16, 2, 3] {
            let frames = 4_099;
            let mut wav =
                encode_wav_pcm16(&vec![0.0; frames * usize::from(channels)], 16_000, channels);
            // Every 16-bit value can occur, the extremes included.
            let data = wav.len() - frames * usize::from(channels) * 2;
            for (i, b) in wav[data..].chunks_exact_mut(2).enumerate() {
                let v: i16 = match i {
                    0 => i16::MIN,
                    1 => i16::MAX,
                    _ => rng.random(),
                };
                b.copy_from_slice(&v.to_le_bytes());
            }
            let path = Path::new("pcm16.wav");
            let fast = decode_wav_bytes(wav.clone(), path).unwrap();
            let info = parse_wav_header(&wav, path).unwrap();
            let theirs = decode_with_symphonia(wav, path, info).unwrap();
            assert_eq!(fast.samples.len(), frames);
            assert_eq!((fast.sample_rate, fast.channels), (16_000, channels));
            let bits = |a: &Audio| a.samples.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&theirs), "{channels} channels");
        }
    }

    #[test]
    fn the_shared_sinc_table_gives_rubatos_products() {
        use rubato::sinc_interpolator::{ScalarInterpolator, SincInterpolator};
        let wave: Vec<f32> = (0..400)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        for ratio in [0.8, 1.25] {
            let ours = SincTable::for_ratio(ratio);
            let cutoff = if ratio >= 1.0 {
                0.95
            } else {
                0.95 * ratio as f32
            };
            let theirs = ScalarInterpolator::<f32>::new(
                SincTable::TAPS,
                SincTable::PHASES,
                cutoff,
                rubato::WindowFunction::BlackmanHarris2,
            );
            for (index, phase) in [(0, 0), (5, 17), (100, 2047), (271, 512)] {
                let (a, b) = (
                    ours.get_sinc_interpolated(&wave, index, phase),
                    theirs.get_sinc_interpolated(&wave, index, phase),
                );
                assert!(
                    (a - b).abs() <= 1e-5,
                    "ratio {ratio}, {index}/{phase}: {a} vs {b}"
                );
            }
            assert!(
                Arc::ptr_eq(&ours.0, &SincTable::for_ratio(ratio).0),
                "built once"
            );
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx") {
                let taps = ours.taps(300);
                for start in [0, 13, 200] {
                    let (a, b) = (&wave[start..], taps);
                    // SAFETY: AVX is there, checked above.
                    let avx = unsafe { dot_avx(a, b) };
                    assert_eq!(avx.to_bits(), dot_portable(a, b).to_bits(), "same bits");
                }
            }
        }
    }

    #[test]
    fn resampling_by_a_ratio_keeps_a_sine_in_place() {
        let f = 0.01;
        let x: Vec<f32> = (0..8000)
            .map(|n| (std::f64::consts::TAU * f * n as f64).sin() as f32)
            .collect();
        for ratio in [0.84, 2f64.powf(0.25), 1.5, 2.0] {
            let y = resample_by_ratio(&x, ratio).unwrap();
            assert_eq!(y.len(), (8000.0 * ratio).ceil() as usize);
            // Away from the edges, where the filter sees zeros.
            let worst = (1000..y.len() - 1000)
                .map(|j| {
                    let at = j as f64 / ratio;
                    (f64::from(y[j]) - (std::f64::consts::TAU * f * at).sin()).abs()
                })
                .fold(0.0, f64::max);
            assert!(worst < 1e-3, "ratio {ratio}: off the sine by {worst}");
        }
        for bad in [0.0, -1.0, f64::NAN] {
            let err = resample_by_ratio(&x, bad).unwrap_err().to_string();
            assert!(err.contains("positive"), "{err}");
        }
    }

    /// Builds a WAV by hand: `tag` format, `bits`, interleaved raw sample bytes.
    pub(crate) fn raw_wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * u32::from(channels * bits / 8)).to_le_bytes());
        out.extend_from_slice(&(channels * bits / 8).to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    fn p() -> &'static Path {
        Path::new("x.wav")
    }

    #[test]
    fn sixteen_bit_pcm_is_scaled_by_two_to_the_fifteen() {
        let data: Vec<u8> = [i16::MIN, -16384, 0, 16384, i16::MAX]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let a = decode_wav_bytes(raw_wav(1, 1, 16000, 16, &data), p()).unwrap();
        assert_eq!(a.samples, vec![-1.0, -0.5, 0.0, 0.5, 32767.0 / 32768.0]);
        assert_eq!(a.sample_rate, 16000);
    }

    #[test]
    fn eight_bit_pcm_is_unsigned_and_centred_at_128() {
        let a = decode_wav_bytes(raw_wav(1, 1, 8000, 8, &[0, 64, 128, 255]), p()).unwrap();
        assert_eq!(a.samples, vec![-1.0, -0.5, 0.0, 127.0 / 128.0]);
    }

    #[test]
    fn twenty_four_bit_pcm_is_scaled_by_two_to_the_twenty_three() {
        let data = [0x00, 0x00, 0xC0, 0x00, 0x00, 0x40]; // -2^22, +2^22
        let a = decode_wav_bytes(raw_wav(1, 1, 48000, 24, &data), p()).unwrap();
        assert_eq!(a.samples, vec![-0.5, 0.5]);
    }

    #[test]
    fn float64_samples_are_read_and_stereo_is_averaged() {
        let data: Vec<u8> = [0.25f64, 0.75, -1.0, 0.5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let a = decode_wav_bytes(raw_wav(3, 2, 44100, 64, &data), p()).unwrap();
        assert_eq!(a.samples, vec![0.5, -0.25]);
        assert_eq!(a.channels, 2);
    }

    #[test]
    fn a_truncated_file_is_an_error_that_names_the_file() {
        let data: Vec<u8> = (0..400u32).flat_map(|v| (v as i16).to_le_bytes()).collect();
        let mut wav = raw_wav(1, 1, 16000, 16, &data);
        wav.truncate(wav.len() - 101);
        let err = decode_wav_bytes(wav, Path::new("dir/cut.wav")).unwrap_err();
        assert!(
            matches!(
                err,
                AudioError::Truncated {
                    declared: 800,
                    present: 699,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("dir/cut.wav"), "{err}");
    }

    #[test]
    fn garbage_and_empty_and_adpcm_files_are_rejected() {
        assert!(matches!(
            decode_wav_bytes(b"hello world, not a wav".to_vec(), p()),
            Err(AudioError::NotWav { .. })
        ));
        assert!(matches!(
            decode_wav_bytes(raw_wav(1, 1, 16000, 16, &[]), p()),
            Err(AudioError::Empty { .. })
        ));
        assert!(matches!(
            decode_wav_bytes(raw_wav(2, 1, 16000, 16, &[0, 0]), p()),
            Err(AudioError::Unsupported { .. })
        ));
        assert!(matches!(
            decode_wav_bytes(raw_wav(1, 0, 16000, 16, &[0, 0]), p()),
            Err(AudioError::NotWav { .. })
        ));
    }

    #[test]
    fn written_pcm16_reads_back_within_one_quantisation_step() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.01).sin() * 0.9).collect();
        let back = decode_wav_bytes(encode_wav_pcm16(&x, 16000, 1), p()).unwrap();
        assert_eq!(back.samples.len(), x.len());
        for (a, b) in x.iter().zip(&back.samples) {
            assert!((a - b).abs() < 1.0 / 16000.0);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        #[test]
        fn corrupting_any_bytes_of_a_valid_wav_never_panics_and_errors_name_the_file(
            edits in proptest::collection::vec((0usize..200, proptest::prelude::any::<u8>()), 0..6),
            cut in 0usize..400,
        ) {
            let data: Vec<u8> = (0..150u32).flat_map(|v| ((v * 331) as i16).to_le_bytes()).collect();
            let mut wav = raw_wav(1, 2, 16000, 16, &data);
            for (at, v) in edits {
                let at = at % wav.len();
                wav[at] = v;
            }
            wav.truncate(wav.len().saturating_sub(cut));
            let header = parse_wav_header(&wav, Path::new("mutant.wav"));
            match decode_wav_bytes(wav, Path::new("mutant.wav")) {
                Ok(a) => {
                    let h = header.unwrap();
                    proptest::prop_assert_eq!(a.samples.len() as u64, h.frames);
                    proptest::prop_assert_eq!((a.sample_rate, a.channels), (h.sample_rate, h.channels));
                }
                Err(e) => proptest::prop_assert!(e.to_string().contains("mutant.wav"), "{}", e),
            }
        }
    }

    #[test]
    fn resampling_keeps_a_tone_at_its_frequency_and_amplitude() {
        let f = 1000.0f32;
        let x: Vec<f32> = (0..48000)
            .map(|i| (2.0 * std::f32::consts::PI * f * i as f32 / 48000.0).sin())
            .collect();
        let y = resample(&x, 48000, 16000).unwrap();
        assert_eq!(y.len(), 16000);
        // Project the middle (away from the edges) on sin and cos: amplitude 1, phase 0.
        let (mut a, mut b) = (0.0f64, 0.0f64);
        for (i, &v) in y.iter().enumerate().take(12000).skip(4000) {
            let w = 2.0 * std::f64::consts::PI * f64::from(f) * i as f64 / 16000.0;
            a += f64::from(v) * w.sin() / 4000.0;
            b += f64::from(v) * w.cos() / 4000.0;
        }
        let (amp, phase) = ((a * a + b * b).sqrt(), b.atan2(a));
        // rubato's FFT filter leaves a constant lag of at most one input sample (documented).
        let one_input_sample = 2.0 * std::f64::consts::PI * f64::from(f) / 48000.0;
        assert!((amp - 1.0).abs() < 1e-2, "amplitude {amp}");
        assert!(
            phase <= 0.0 && -phase <= 1.01 * one_input_sample,
            "phase {phase}"
        );
    }

    #[test]
    fn resampling_removes_content_above_the_new_nyquist() {
        let x: Vec<f32> = (0..48000)
            .map(|i| (2.0 * std::f32::consts::PI * 12000.0 * i as f32 / 48000.0).sin())
            .collect();
        let y = resample(&x, 48000, 16000).unwrap();
        let rms = (y[2000..14000].iter().map(|v| v * v).sum::<f32>() / 12000.0).sqrt();
        assert!(rms < 1e-3, "aliased rms {rms}");
    }
}
