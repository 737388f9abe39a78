//! The Silero voice-activity detector (silero-vad 6.2.3's `silero_vad.onnx`) run by ONNX
//! Runtime through `ort`, behind [`VoiceDetector`].
//!
//! The model is loaded once per process ([`SileroModel::load`], shared with an `Arc`);
//! each call owns a [`SileroVad`] with its recurrent state. The model judges windows of
//! 256 samples at 8 kHz or 512 at 16 kHz (32 ms), each preceded by the last 32 / 64
//! samples of the previous window (Silero's `OnnxWrapper`). Call frames are 20 ms, so
//! samples are buffered: a frame's decision is the highest probability of the windows it
//! completes, or the previous decision when it completes none. 8 and 16 kHz calls are fed
//! to the model as they are; 32 and 48 kHz calls are resampled to 16 kHz first.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::tensor::TensorElementType;
use ort::value::{Tensor, ValueType};

use super::resample::FrameResampler;
use super::vad::{VadError, VoiceDetector};
use crate::backend::local::tts::{init_onnxruntime, ort_dylib};
use crate::models::{model_file, ModelError};

/// Artefact id of the model in the model cache (`models/models.toml`).
pub const SILERO_ID: &str = "silero-vad";
/// The model's file name inside the artefact directory.
pub const SILERO_FILE: &str = "silero_vad.onnx";
/// Silero's own default speech threshold.
pub const DEFAULT_SILERO_THRESHOLD: f32 = 0.5;

/// Recurrent state: `[2, 1, 128]` floats.
const STATE_LEN: usize = 2 * 128;

/// A loaded Silero model: one ONNX session shared by every call's [`SileroVad`].
/// `Send + Sync`. Inference takes a lock on the session (`ort` 2.0.0-rc.10's `run` needs
/// `&mut`), so concurrent calls take turns for each 32 ms window.
pub struct SileroModel {
    path: PathBuf,
    session: Mutex<Session>,
}

impl std::fmt::Debug for SileroModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroModel")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SileroModel {
    /// Loads `<root>/silero-vad/silero_vad.onnx` and ONNX Runtime from
    /// `<root>/onnxruntime/` (`root` is usually [`crate::models::models_dir`]).
    pub fn load(root: &Path) -> Result<Arc<Self>, ModelError> {
        let onnx = model_file(root, SILERO_ID, SILERO_FILE)?;
        let dylib = ort_dylib(root)?;
        Self::load_files(&onnx, &dylib)
    }

    /// Loads the model from explicit files.
    pub fn load_files(onnx: &Path, dylib: &Path) -> Result<Arc<Self>, ModelError> {
        if !onnx.is_file() {
            return Err(ModelError::Missing {
                id: SILERO_ID.to_owned(),
                path: onnx.to_owned(),
            });
        }
        init_onnxruntime(dylib)?;
        let corrupt = |reason: String| ModelError::Corrupt {
            id: SILERO_ID.to_owned(),
            path: onnx.to_owned(),
            reason,
        };
        let session = Session::builder()
            .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::Level3))
            .and_then(|b| b.with_intra_threads(1))
            .and_then(|b| b.with_inter_threads(1))
            .and_then(|b| b.commit_from_file(onnx))
            .map_err(|e| corrupt(e.to_string()))?;
        check_interface(&session).map_err(corrupt)?;
        Ok(Arc::new(Self {
            path: onnx.to_owned(),
            session: Mutex::new(session),
        }))
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs one window (`input` = context + window, at `rate`); updates `state` and
    /// returns the speech probability.
    fn infer(&self, input: &[f32], state: &mut [f32], rate: u32) -> Result<f32, String> {
        let fail = |e: ort::Error| e.to_string();
        let x = Tensor::from_array(([1usize, input.len()], input.to_vec())).map_err(fail)?;
        let h = Tensor::from_array(([2usize, 1, 128], state.to_vec())).map_err(fail)?;
        let sr = Tensor::from_array(((), vec![i64::from(rate)])).map_err(fail)?;
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let outputs = session
            .run(ort::inputs!["input" => x, "state" => h, "sr" => sr])
            .map_err(fail)?;
        if outputs.len() < 2 {
            return Err(format!("{} outputs, 2 expected", outputs.len()));
        }
        let (_, probability) = outputs[0].try_extract_tensor::<f32>().map_err(fail)?;
        let (_, new_state) = outputs[1].try_extract_tensor::<f32>().map_err(fail)?;
        let (Some(&p), true) = (probability.first(), new_state.len() == state.len()) else {
            return Err(format!(
                "output sizes {} and {}, 1 and {} expected",
                probability.len(),
                new_state.len(),
                state.len()
            ));
        };
        state.copy_from_slice(new_state);
        Ok(p)
    }
}

/// Checks the session is Silero v5/v6: inputs `input` f32, `state` f32 `[2, *, 128]`,
/// `sr` i64; two f32 outputs (probability, state).
fn check_interface(session: &Session) -> Result<(), String> {
    let tensor = |ty: &ValueType| match ty {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.to_vec())),
        _ => None,
    };
    let input = |name: &str| {
        session
            .inputs
            .iter()
            .find(|i| i.name == name)
            .and_then(|i| tensor(&i.input_type))
            .ok_or_else(|| {
                format!("the model has no tensor input {name:?}; is it Silero VAD v5 or later?")
            })
    };
    let (x, _) = input("input")?;
    let (state, state_shape) = input("state")?;
    let (sr, _) = input("sr")?;
    let state_ok = state_shape.len() == 3 && state_shape[0] == 2 && state_shape[2] == 128;
    if x != TensorElementType::Float32
        || state != TensorElementType::Float32
        || sr != TensorElementType::Int64
        || !state_ok
    {
        return Err(format!(
            "unexpected inputs (input {x:?}, state {state:?} {state_shape:?}, sr {sr:?}); \
             is it Silero VAD v5 or later?"
        ));
    }
    let outputs: Vec<_> = session
        .outputs
        .iter()
        .filter_map(|o| tensor(&o.output_type))
        .collect();
    if outputs.len() != 2
        || outputs
            .iter()
            .any(|(ty, _)| *ty != TensorElementType::Float32)
    {
        return Err(format!(
            "{} outputs {outputs:?}, two float tensors expected (probability, state)",
            session.outputs.len()
        ));
    }
    Ok(())
}

/// One call's Silero detector: 20 ms frames at 8, 16, 32 or 48 kHz in, a decision per
/// frame out. `Send`; cheap to create (the model is shared).
///
/// If ONNX Runtime fails on a window (it should not: the shapes are checked at load),
/// the window counts as non-speech, a warning is logged and
/// [`inference_failures`](Self::inference_failures) counts it: a broken detector must
/// not hold a turn open for ever.
pub struct SileroVad {
    model: Arc<SileroModel>,
    rate: u32,
    model_rate: u32,
    window: usize,
    threshold: f32,
    resampler: Option<FrameResampler>,
    wide: Vec<i16>,
    /// Samples at the model's rate not yet judged.
    pending: Vec<f32>,
    /// Model input: context followed by one window.
    input: Vec<f32>,
    state: Vec<f32>,
    last_decision: bool,
    last_probability: f32,
    failures: u64,
}

impl std::fmt::Debug for SileroVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroVad")
            .field("rate", &self.rate)
            .field("model_rate", &self.model_rate)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

impl SileroVad {
    /// A detector for 20 ms frames at `rate` Hz (8000, 16000, 32000 or 48000); a frame is
    /// speech when a window's probability reaches `threshold` (0..1; Silero's default is
    /// [`DEFAULT_SILERO_THRESHOLD`]).
    pub fn new(model: Arc<SileroModel>, rate: u32, threshold: f32) -> Result<Self, VadError> {
        let (model_rate, resampler) = match rate {
            8000 | 16000 => (rate, None),
            32000 | 48000 => (
                16000,
                Some(
                    FrameResampler::new(rate, 16000, rate as usize / 50)
                        .map_err(|_| VadError::UnsupportedRate(rate))?,
                ),
            ),
            _ => return Err(VadError::UnsupportedRate(rate)),
        };
        let window = if model_rate == 16000 { 512 } else { 256 };
        let context = window / 8; // 64 at 16 kHz, 32 at 8 kHz
        Ok(Self {
            model,
            rate,
            model_rate,
            window,
            threshold,
            resampler,
            wide: Vec::with_capacity(640),
            pending: Vec::with_capacity(2 * window + 640),
            input: vec![0.0; context + window],
            state: vec![0.0; STATE_LEN],
            last_decision: false,
            last_probability: 0.0,
            failures: 0,
        })
    }

    /// The speech threshold.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The probability of the last window judged (0 before the first).
    pub fn last_probability(&self) -> f32 {
        self.last_probability
    }

    /// Windows ONNX Runtime failed on since this detector was created.
    pub fn inference_failures(&self) -> u64 {
        self.failures
    }

    /// Judges one window from `pending[start..]`; the context is the tail of `input`.
    fn judge(&mut self, start: usize) -> f32 {
        let context = self.input.len() - self.window;
        // The new context is the last `context` samples of the previous input.
        self.input.copy_within(self.window.., 0);
        self.input[context..].copy_from_slice(&self.pending[start..start + self.window]);
        match self
            .model
            .infer(&self.input, &mut self.state, self.model_rate)
        {
            Ok(p) => p,
            Err(reason) => {
                self.failures += 1;
                if self.failures == 1 || self.failures.is_multiple_of(1000) {
                    tracing::warn!(
                        model = %self.model.path.display(),
                        failures = self.failures,
                        %reason,
                        "Silero VAD inference failed; the window counts as non-speech"
                    );
                }
                0.0
            }
        }
    }
}

impl VoiceDetector for SileroVad {
    fn is_voiced(&mut self, frame: &[i16]) -> Result<bool, VadError> {
        let size_error = || VadError::FrameSize {
            got: frame.len(),
            rate: self.rate,
        };
        if frame.len() != self.rate as usize / 50 {
            return Err(size_error());
        }
        match &mut self.resampler {
            Some(r) => {
                self.wide.clear();
                r.process(frame, &mut self.wide).map_err(|_| size_error())?;
                self.pending
                    .extend(self.wide.iter().map(|&s| f32::from(s) / 32768.0));
            }
            None => self
                .pending
                .extend(frame.iter().map(|&s| f32::from(s) / 32768.0)),
        }
        let mut best: Option<f32> = None;
        let mut used = 0;
        while self.pending.len() - used >= self.window {
            let p = self.judge(used);
            self.last_probability = p;
            best = Some(best.map_or(p, |b| b.max(p)));
            used += self.window;
        }
        self.pending.drain(..used);
        if let Some(p) = best {
            self.last_decision = p >= self.threshold;
        }
        Ok(self.last_decision)
    }

    fn rate(&self) -> u32 {
        self.rate
    }

    fn name(&self) -> &'static str {
        "silero"
    }

    fn reset(&mut self) {
        self.pending.clear();
        self.input.fill(0.0);
        self.state.fill(0.0);
        self.last_decision = false;
        self.last_probability = 0.0;
        if let Some(r) = &mut self.resampler {
            if let Ok(fresh) = FrameResampler::new(self.rate, 16000, self.rate as usize / 50) {
                *r = fresh;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fetched model, loaded once for the test binary.
    fn model() -> Arc<SileroModel> {
        static MODEL: std::sync::OnceLock<Arc<SileroModel>> = std::sync::OnceLock::new();
        MODEL
            .get_or_init(|| {
                SileroModel::load(&crate::models::models_dir()).unwrap_or_else(|e| panic!("{e}"))
            })
            .clone()
    }

    #[test]
    fn missing_model_names_the_file_and_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = SileroModel::load(dir.path()).expect_err("missing");
        assert!(matches!(err, ModelError::Missing { ref id, .. } if id == SILERO_ID));
        let text = err.to_string();
        assert!(text.contains("silero-vad/silero_vad.onnx"), "{text}");
        assert!(
            text.contains("scripts/fetch-models.sh --only silero-vad"),
            "{text}"
        );
    }

    #[test]
    fn detector_is_send_and_model_is_shareable() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<SileroVad>();
        send_sync::<SileroModel>();
    }

    #[test]
    fn checks_rate_and_frame_size_without_panicking() {
        let model = model();
        assert!(matches!(
            SileroVad::new(model.clone(), 22050, 0.5),
            Err(VadError::UnsupportedRate(22050))
        ));
        for rate in [8000, 16000, 32000, 48000] {
            let mut vad = SileroVad::new(model.clone(), rate, 0.5).expect("rate");
            assert_eq!(vad.rate(), rate);
            for len in [0, 1, rate as usize / 100, rate as usize / 50 + 1, 5000] {
                assert_eq!(
                    vad.is_voiced(&vec![1000; len]),
                    Err(VadError::FrameSize { got: len, rate }),
                    "{rate} Hz, {len}"
                );
            }
        }
    }

    #[test]
    fn silence_is_never_speech_at_any_rate() {
        let model = model();
        for rate in [8000, 16000, 32000, 48000] {
            let mut vad = SileroVad::new(model.clone(), rate, 0.5).expect("rate");
            let frame = vec![0i16; rate as usize / 50];
            for _ in 0..100 {
                assert_eq!(vad.is_voiced(&frame), Ok(false), "{rate} Hz");
            }
            assert!(vad.last_probability() < 0.1, "{}", vad.last_probability());
            assert_eq!(vad.inference_failures(), 0);
        }
    }

    #[test]
    fn reset_restores_the_initial_state() {
        let model = model();
        let mut vad = SileroVad::new(model, 8000, 0.5).expect("rate");
        // A loud square wave moves the state; after reset the first frames behave as new.
        let buzz: Vec<i16> = (0..160)
            .map(|i| if (i / 20) % 2 == 0 { 8000 } else { -8000 })
            .collect();
        let fresh: Vec<f32> = {
            let mut probs = Vec::new();
            for _ in 0..10 {
                vad.is_voiced(&buzz).expect("frame");
                probs.push(vad.last_probability());
            }
            probs
        };
        for _ in 0..20 {
            vad.is_voiced(&[0; 160]).expect("frame");
        }
        vad.reset();
        assert_eq!(vad.last_probability(), 0.0);
        let again: Vec<f32> = (0..10)
            .map(|_| {
                vad.is_voiced(&buzz).expect("frame");
                vad.last_probability()
            })
            .collect();
        assert_eq!(fresh, again);
    }
}
