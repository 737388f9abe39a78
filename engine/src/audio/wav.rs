//! WAV files in and out (hound): prompts, recordings and test audio, always as 16-bit
//! PCM samples with their rate.

use std::path::Path;

use super::f32_to_i16;

/// Why a WAV file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// The file could not be opened, parsed or written.
    #[error("{path}: {cause}")]
    Hound {
        /// The file.
        path: String,
        /// What hound said (part of the message, so not also a `source`).
        cause: hound::Error,
    },
    /// A sample format this engine does not take (it wants integer PCM ≤ 32 bits or float).
    #[error("{path}: unsupported WAV format ({bits}-bit {format:?})")]
    Unsupported {
        /// The file.
        path: String,
        /// Bits per sample.
        bits: u16,
        /// Integer or float.
        format: hound::SampleFormat,
    },
    /// The requested channel does not exist.
    #[error("{path}: no channel {channel} (the file has {channels})")]
    NoSuchChannel {
        /// The file.
        path: String,
        /// Requested channel.
        channel: u16,
        /// Channels in the file.
        channels: u16,
    },
}

/// Mono 16-bit audio with its sample rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcm {
    /// Samples per second.
    pub rate: u32,
    /// The samples.
    pub samples: Vec<i16>,
}

impl Pcm {
    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.rate.max(1))
    }
}

/// Which channel(s) to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    /// Average all channels.
    Mix,
    /// Only this channel (0 = left).
    Only(u16),
}

/// Reads a WAV file as mono 16-bit PCM.
pub fn read(path: &Path, channels: Channels) -> Result<Pcm, WavError> {
    let name = || path.display().to_string();
    let hound_err = |cause| WavError::Hound {
        path: name(),
        cause,
    };
    let reader = hound::WavReader::open(path).map_err(hound_err)?;
    let spec = reader.spec();
    let n = spec.channels.max(1);
    if let Channels::Only(channel) = channels {
        if channel >= n {
            return Err(WavError::NoSuchChannel {
                path: name(),
                channel,
                channels: n,
            });
        }
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let scale = 1.0 / (1i64 << (bits - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|s| s as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(hound_err)?
        }
        (hound::SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(hound_err)?,
        (format, bits) => {
            return Err(WavError::Unsupported {
                path: name(),
                bits,
                format,
            })
        }
    };
    let samples = interleaved
        .chunks(usize::from(n))
        .map(|frame| {
            let v = match channels {
                Channels::Mix => frame.iter().sum::<f32>() / f32::from(n),
                Channels::Only(c) => frame.get(usize::from(c)).copied().unwrap_or(0.0),
            };
            f32_to_i16(v)
        })
        .collect();
    Ok(Pcm {
        rate: spec.sample_rate,
        samples,
    })
}

/// Writes mono 16-bit PCM.
pub fn write(path: &Path, pcm: &Pcm) -> Result<(), WavError> {
    let hound_err = |cause| WavError::Hound {
        path: path.display().to_string(),
        cause,
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: pcm.rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(hound_err)?;
    for &s in &pcm.samples {
        writer.write_sample(s).map_err(hound_err)?;
    }
    writer.finalize().map_err(hound_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(samples: &[i16]) -> f64 {
        let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / samples.len().max(1) as f64).sqrt()
    }

    fn fixtures() -> std::path::PathBuf {
        std::env::var_os("TOM_FIXTURES")
            .map(Into::into)
            .unwrap_or_else(|| std::path::PathBuf::from("../../shared/fixtures/freeswitch"))
    }

    #[test]
    fn reads_the_caller_leg_recording_as_the_readme_describes() {
        let path =
            fixtures().join("media-unicast/outbound_unicast_pcmu_l16.caller_leg_record_stereo.wav");
        let heard = read(&path, Channels::Only(0)).expect("left channel");
        assert_eq!(heard.rate, 8000);
        assert!((heard.seconds() - 12.18).abs() < 0.01);
        let window = |from: f64, to: f64| {
            let r = heard.rate as f64;
            rms(&heard.samples[(from * r) as usize..(to * r) as usize])
        };
        // Injected reply 1.0–5.0 s, silence, the 600 Hz tone 6.5–8.5 s, silence.
        let (reply, gap, tone, tail) = (
            window(1.2, 4.8),
            window(5.3, 6.3),
            window(6.7, 8.3),
            window(9.0, 12.0),
        );
        assert!(reply > 10.0 * gap.max(1.0), "reply {reply} vs gap {gap}");
        assert!(tone > 10.0 * tail.max(1.0), "tone {tone} vs tail {tail}");
        assert!(matches!(
            read(&path, Channels::Only(2)),
            Err(WavError::NoSuchChannel { channels: 2, .. })
        ));
    }

    #[test]
    fn write_then_read_round_trips() {
        let path = std::env::temp_dir().join(format!("tom-wav-{}.wav", std::process::id()));
        let pcm = Pcm {
            rate: 16000,
            samples: (0..1600).map(|i| ((i * 37) % 2000 - 1000) as i16).collect(),
        };
        write(&path, &pcm).expect("write");
        let back = read(&path, Channels::Mix).expect("read");
        let _ = std::fs::remove_file(&path);
        assert_eq!(back, pcm);
    }

    #[test]
    fn missing_and_broken_files_are_errors_naming_the_file() {
        let missing = std::path::Path::new("/nonexistent/x.wav");
        let err = read(missing, Channels::Mix).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/x.wav"));
        let path = std::env::temp_dir().join(format!("tom-broken-{}.wav", std::process::id()));
        std::fs::write(&path, b"RIFF\0\0\0\0WAVEjunk").expect("write");
        let err = read(&path, Channels::Mix).expect_err("broken");
        let _ = std::fs::remove_file(&path);
        assert!(matches!(err, WavError::Hound { .. }));
    }
}
