//! The fallback voice: espeak-ng's own formant synthesis, for a language that has no
//! Piper voice installed. Intelligible but robotic; the engine says so when it uses it.
//!
//! This runs the `espeak-ng` program (text on stdin, WAV on stdout) once per utterance
//! rather than the in-process library: the `espeakng` crate's synthesis path segfaulted
//! here (exit 139 on `Speaker::synthesize`, see docs/decisions/0004-tts.md), and a crash
//! in the call path is not acceptable. Piper's phonemization (in-process, a different
//! code path) is unaffected. Text goes through stdin, so nothing in it can act as an option.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::audio::wav::Pcm;

use super::TtsError;

/// An espeak-ng voice for one language, e.g. `de`, `fr`, `en-us`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspeakVoice {
    language: String,
}

impl EspeakVoice {
    /// Checks that espeak-ng is installed and has a voice for `language`.
    pub fn new(language: &str) -> Result<Self, TtsError> {
        if language.is_empty()
            || !language
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c))
        {
            return Err(TtsError::Espeak(format!(
                "invalid espeak-ng voice name {language:?}"
            )));
        }
        let voice = Self {
            language: language.to_owned(),
        };
        voice.run("")?;
        Ok(voice)
    }

    /// The language code.
    pub fn language(&self) -> &str {
        &self.language
    }

    /// Speaks `text` (blocking; run it on a worker thread).
    pub fn synthesize(&self, text: &str) -> Result<Pcm, TtsError> {
        self.run(text)
    }

    fn run(&self, text: &str) -> Result<Pcm, TtsError> {
        let fail =
            |what: String| TtsError::Espeak(format!("espeak-ng voice {:?}: {what}", self.language));
        let mut child = Command::new("espeak-ng")
            .args(["-v", &self.language, "--stdout"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                fail(format!(
                    "cannot run espeak-ng ({e}); install it with scripts/bootstrap.sh"
                ))
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(text.as_bytes())
                .map_err(|e| fail(e.to_string()))?;
        }
        let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let reason = stderr.trim();
            return Err(fail(if reason.is_empty() {
                out.status.to_string()
            } else {
                format!("no espeak-ng voice: {reason}")
            }));
        }
        parse_streamed_wav(&out.stdout).map_err(fail)
    }
}

/// Reads espeak-ng's streamed WAV: its header carries placeholder lengths (it cannot seek
/// back on a pipe), so the data chunk is everything after its header.
fn parse_streamed_wav(bytes: &[u8]) -> Result<Pcm, String> {
    if bytes.is_empty() {
        return Ok(Pcm {
            rate: 22_050,
            samples: Vec::new(),
        });
    }
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("output is not a WAV stream".into());
    }
    let mut pos = 12;
    let mut rate = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let body = pos + 8;
        if id == b"fmt " {
            let fmt = bytes.get(body..body + 16).ok_or("short fmt chunk")?;
            let channels = u16::from_le_bytes([fmt[2], fmt[3]]);
            let bits = u16::from_le_bytes([fmt[14], fmt[15]]);
            if channels != 1 || bits != 16 {
                return Err(format!(
                    "unexpected format: {channels} channels, {bits} bits"
                ));
            }
            rate = Some(u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]));
        } else if id == b"data" {
            let rate = rate.ok_or("data before fmt")?;
            let samples = bytes[body..]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            return Ok(Pcm { rate, samples });
        }
        pos = body.saturating_add(len + (len & 1));
    }
    Err("no data chunk".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_streamed_header_with_placeholder_lengths() {
        let mut wav = b"RIFF\x24\xf0\xff\x7fWAVEfmt \x10\0\0\0\x01\0\x01\0\x22\x56\0\0\x44\xac\0\0\x02\0\x10\0data\0\xf0\xff\x7f".to_vec();
        wav.extend_from_slice(&[1, 0, 0xff, 0xff]);
        let pcm = parse_streamed_wav(&wav).expect("wav");
        assert_eq!((pcm.rate, pcm.samples), (22050, vec![1, -1]));
        assert!(parse_streamed_wav(b"garbage").is_err());
        assert!(parse_streamed_wav(b"RIFF\0\0\0\0WAVEdata\0\0\0\0").is_err());
    }

    #[test]
    fn refuses_voice_names_that_could_be_options() {
        assert!(EspeakVoice::new("--help").is_err());
        assert!(EspeakVoice::new("").is_err());
    }
}
