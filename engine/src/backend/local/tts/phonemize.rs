//! Text → Piper phoneme ids.
//!
//! Piper voices are trained on espeak-ng's IPA output split into Unicode scalar values
//! (after NFD decomposition), with the clause's punctuation appended and every phoneme
//! followed by the pad symbol (piper-phonemize `phonemize_eSpeak` + `phonemes_to_ids`).
//!
//! espeak-ng is the Debian `libespeak-ng`, linked through the safe `espeakng` crate. Its
//! `text_to_phonemes` makes one `espeak_TextToPhonemes` call, which converts only the
//! first *clause* of its input; so we split clauses ourselves at every character
//! espeak-ng ends a clause on, and after each call we make an empty "flush" call: if a
//! clause was still cut short, espeak-ng's left-over state shows up there, and we
//! re-phonemize that clause word by word instead of losing words (and counting it).

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;

use super::TtsError;

/// Piper's padding symbol, written after every phoneme.
pub const PAD: char = '_';
/// Piper's beginning-of-sentence symbol.
pub const BOS: char = '^';
/// Piper's end-of-sentence symbol.
pub const EOS: char = '$';

/// Longest clause (in bytes) handed to espeak-ng in one call; longer ones are cut at a
/// space so espeak-ng's own long-clause split never applies.
const MAX_CLAUSE_BYTES: usize = 300;

/// Abbreviations whose period does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "vs", "etc", "e.g", "i.e", "no", "approx",
];

/// The phoneme → ids table of a voice, with its special symbols checked.
#[derive(Debug, Clone)]
pub struct PhonemeIdMap {
    map: HashMap<char, Vec<i64>>,
    pad: Vec<i64>,
    bos: Vec<i64>,
    eos: Vec<i64>,
}

/// The model input for one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhonemeIds {
    /// BOS, PAD, (phoneme, PAD)*, EOS.
    pub ids: Vec<i64>,
    /// Phonemes that the voice does not know and that were left out.
    pub skipped: usize,
}

impl PhonemeIdMap {
    /// Builds the table from a voice's `phoneme_id_map` (keys are single characters);
    /// fails if `^`, `$` or `_` is missing or a key is not one character.
    pub fn new(raw: &HashMap<String, Vec<i64>>) -> Result<Self, String> {
        let mut map = HashMap::with_capacity(raw.len());
        for (key, ids) in raw {
            let mut chars = key.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => {
                    map.insert(c, ids.clone());
                }
                _ => return Err(format!("phoneme_id_map key {key:?} is not one character")),
            }
        }
        let special = |c: char| {
            map.get(&c)
                .filter(|ids| !ids.is_empty())
                .cloned()
                .ok_or_else(|| format!("phoneme_id_map has no {c:?}"))
        };
        Ok(Self {
            pad: special(PAD)?,
            bos: special(BOS)?,
            eos: special(EOS)?,
            map,
        })
    }

    /// Piper's `phonemes_to_ids`: BOS, PAD, then each known phoneme's ids followed by
    /// PAD, then EOS. Unknown phonemes are skipped and counted.
    pub fn ids(&self, phonemes: &str) -> PhonemeIds {
        let mut ids = Vec::with_capacity(phonemes.len() * 2 + 3);
        ids.extend_from_slice(&self.bos);
        ids.extend_from_slice(&self.pad);
        let mut skipped = 0;
        for phoneme in phonemes.chars() {
            match self.map.get(&phoneme) {
                Some(p) => {
                    ids.extend_from_slice(p);
                    ids.extend_from_slice(&self.pad);
                }
                None => skipped += 1,
            }
        }
        ids.extend_from_slice(&self.eos);
        PhonemeIds { ids, skipped }
    }
}

/// Splits text into sentences, so the first one can be spoken while the rest is still
/// being synthesized. Boundaries: `.`, `?`, `!`, `…` (with any closing quotes or
/// brackets) followed by whitespace or the end, except after a few abbreviations
/// ("Dr.", "e.g."), and blank lines. Empty pieces are dropped; each piece is trimmed.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    let mut prev_newline = false;
    while let Some((i, c)) = chars.next() {
        let mut end = None;
        if c == '\n' {
            if prev_newline {
                end = Some(i);
            }
            prev_newline = true;
        } else if !c.is_whitespace() {
            prev_newline = false;
        }
        if matches!(c, '.' | '?' | '!' | '…') {
            // Swallow runs like "?!" or "..." and closing quotes/brackets.
            let mut stop = i + c.len_utf8();
            while let Some(&(j, n)) = chars.peek() {
                if matches!(
                    n,
                    '.' | '?' | '!' | '…' | '"' | '\'' | '”' | '’' | ')' | ']'
                ) {
                    stop = j + n.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let at_break = chars.peek().is_none_or(|&(_, n)| n.is_whitespace());
            if at_break && !(c == '.' && ends_with_abbreviation(&text[start..i])) {
                end = Some(stop);
            }
        }
        if let Some(end) = end {
            push_trimmed(&mut out, &text[start..end]);
            start = end;
        }
    }
    push_trimmed(&mut out, &text[start..]);
    out
}

fn push_trimmed<'a>(out: &mut Vec<&'a str>, piece: &'a str) {
    let piece = piece.trim();
    if piece.chars().any(char::is_alphanumeric) {
        out.push(piece);
    }
}

fn ends_with_abbreviation(before: &str) -> bool {
    let word = before
        .rsplit(|c: char| c.is_whitespace())
        .next()
        .unwrap_or("")
        .to_lowercase();
    ABBREVIATIONS.contains(&word.as_str())
        || (word.chars().count() == 1 && word.chars().all(char::is_alphabetic))
}

/// One clause of a sentence: its text, cleaned for espeak-ng, and the punctuation Piper
/// appends after its phonemes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// The words, with no character espeak-ng would end a clause on.
    pub text: String,
    /// What follows the clause's phonemes: ".", "?", "!", ", ", ": ", "; " or " ".
    pub terminator: &'static str,
}

/// Characters espeak-ng ends a clause on wherever they stand (dashes, ellipsis,
/// full-width and other scripts' punctuation).
fn always_breaks(c: char) -> bool {
    matches!(
        c,
        '–' | '—'
            | '…'
            | '\u{ff0c}'
            | '\u{ff0e}'
            | '\u{ff1f}'
            | '\u{ff01}'
            | '\u{ff1a}'
            | '\u{ff1b}'
            | '\u{3001}'
            | '\u{3002}'
            | '\u{037e}'
            | '\u{0387}'
            | '\u{055c}'
            | '\u{055e}'
            | '\u{0589}'
            | '\u{060c}'
            | '\u{061b}'
            | '\u{061f}'
            | '\u{06d4}'
            | '\u{0964}'
            | '\u{0965}'
            | '\u{10fb}'
            | '\u{1362}'
            | '\u{1363}'
            | '\u{1364}'
            | '\u{1365}'
            | '\u{1366}'
            | '\u{1367}'
            | '\u{1368}'
            | '\u{ff61}'
    )
}

/// Splits a sentence into clauses the way espeak-ng reads them: at `, . ? ! : ;`
/// followed by whitespace (or the end) and at dashes and ellipses. Quotes, brackets and
/// inverted marks become spaces; whitespace is collapsed.
pub fn clauses(sentence: &str) -> Vec<Clause> {
    let cleaned: String = sentence
        .chars()
        .map(|c| match c {
            '"' | '“' | '”' | '„' | '«' | '»' | '(' | ')' | '[' | ']' | '{' | '}' | '¡' | '¿' => {
                ' '
            }
            c if c.is_whitespace() => ' ',
            c => c,
        })
        .collect();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = cleaned.chars().peekable();
    while let Some(c) = chars.next() {
        let next_is_break = chars.peek().is_none_or(|n| *n == ' ');
        if matches!(c, '.' | '?' | '!' | ',' | ':' | ';')
            && matches!(chars.peek(), Some('.' | '?' | '!' | ',' | ':' | ';'))
        {
            // A run like "?!" or "...": the last mark decides.
            continue;
        }
        let terminator = match c {
            '.' | '?' | '!' | ',' | ':' | ';' if next_is_break => match c {
                '.' => Some("."),
                '?' => Some("?"),
                '!' => Some("!"),
                ',' => Some(", "),
                ':' => Some(": "),
                _ => Some("; "),
            },
            c if always_breaks(c) => Some(" "),
            _ => None,
        };
        match terminator {
            Some(t) => {
                push_clause(&mut out, &mut current, t);
            }
            None => current.push(c),
        }
    }
    push_clause(&mut out, &mut current, "");
    out
}

fn push_clause(out: &mut Vec<Clause>, current: &mut String, terminator: &'static str) {
    let text = current.split_whitespace().collect::<Vec<_>>().join(" ");
    current.clear();
    if text.chars().any(char::is_alphanumeric) {
        // Cut very long clauses at spaces.
        let mut piece = String::new();
        for word in text.split(' ') {
            if !piece.is_empty() && piece.len() + word.len() + 1 > MAX_CLAUSE_BYTES {
                out.push(Clause {
                    text: std::mem::take(&mut piece),
                    terminator: " ",
                });
            }
            if !piece.is_empty() {
                piece.push(' ');
            }
            piece.push_str(word);
        }
        out.push(Clause {
            text: piece,
            terminator,
        });
    } else if let Some(last) = out.last_mut() {
        // Punctuation with no words ("Hello?!"): keep the stronger mark.
        if matches!(terminator, "." | "?" | "!") {
            last.terminator = terminator;
        }
    }
}

/// Removes espeak-ng's language-switch flags, e.g. "(fr)" around foreign words.
fn strip_language_flags(phonemes: &str) -> String {
    let mut out = String::with_capacity(phonemes.len());
    let mut in_flag = false;
    for c in phonemes.chars() {
        match c {
            '(' => in_flag = true,
            ')' if in_flag => in_flag = false,
            _ if !in_flag => out.push(c),
            _ => {}
        }
    }
    out
}

/// The IPA of one sentence, with how often espeak-ng cut a clause short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phonemized {
    /// NFD-decomposed IPA with Piper's punctuation.
    pub phonemes: String,
    /// Clauses espeak-ng did not read to the end in one call (then read word by word).
    pub recovered_clauses: usize,
}

/// espeak-ng for one voice (e.g. `en-us`). All instances share the one global espeak-ng
/// (behind its lock); creating one checks that the library and the voice load.
#[derive(Debug, Clone)]
pub struct Espeak {
    voice: String,
}

const IPA: espeakng::PhonemeGenOptions<'static> = espeakng::PhonemeGenOptions::Standard {
    text_mode: espeakng::TextMode::Utf8,
    // 0x02 = espeakPHONEMES_IPA (the crate's flag names predate espeak-ng's header).
    phoneme_mode: espeakng::PhonemeMode::IncludeZeroWidthJoiners,
};

impl Espeak {
    /// Initialises espeak-ng (once per process) and checks that `voice` exists.
    pub fn new(voice: &str) -> Result<Self, TtsError> {
        let speaker = espeakng::initialise(None).map_err(|e| TtsError::Espeak(e.to_string()))?;
        speaker
            .lock()
            .set_voice_raw(voice)
            .map_err(|e| TtsError::Espeak(format!("voice {voice:?}: {e}")))?;
        Ok(Self {
            voice: voice.to_owned(),
        })
    }

    /// The espeak-ng voice name.
    pub fn voice(&self) -> &str {
        &self.voice
    }

    /// One sentence to Piper's phoneme string (see the module docs).
    pub fn phonemize(&self, sentence: &str) -> Result<Phonemized, TtsError> {
        let speaker = espeakng::initialise(None).map_err(|e| TtsError::Espeak(e.to_string()))?;
        let mut speaker = speaker.lock();
        speaker
            .set_voice_raw(&self.voice)
            .map_err(|e| TtsError::Espeak(format!("voice {:?}: {e}", self.voice)))?;
        let mut raw = String::new();
        let mut recovered_clauses = 0;
        let convert =
            |speaker: &mut espeakng::Speaker, text: &str| -> Result<(String, bool), TtsError> {
                let ipa = speaker
                    .text_to_phonemes(text, IPA)
                    .map_err(|e| TtsError::Espeak(e.to_string()))?
                    .unwrap_or_default();
                let leftover = speaker
                    .text_to_phonemes("", IPA)
                    .map_err(|e| TtsError::Espeak(e.to_string()))?
                    .unwrap_or_default();
                Ok((ipa, !leftover.trim().is_empty()))
            };
        for clause in clauses(sentence) {
            if !raw.is_empty() && !raw.ends_with(' ') {
                // After a sentence end within the text.
                raw.push(' ');
            }
            let (ipa, cut) = convert(&mut speaker, &clause.text)?;
            if cut {
                recovered_clauses += 1;
                tracing::warn!(clause = %clause.text, "espeak-ng cut a clause short; reading it word by word");
                let mut words = Vec::new();
                for word in clause.text.split(' ') {
                    let (ipa, _) = convert(&mut speaker, word)?;
                    if !ipa.is_empty() {
                        words.push(ipa);
                    }
                }
                raw.push_str(&words.join(" "));
            } else {
                raw.push_str(&ipa);
            }
            raw.push_str(clause.terminator);
        }
        drop(speaker);
        let phonemes = strip_language_flags(raw.trim_end()).nfd().collect();
        Ok(Phonemized {
            phonemes,
            recovered_clauses,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> PhonemeIdMap {
        let raw: HashMap<String, Vec<i64>> =
            [("_", 0), ("^", 1), ("$", 2), (" ", 3), ("h", 20), ("a", 14)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), vec![v]))
                .collect();
        PhonemeIdMap::new(&raw).expect("valid map")
    }

    #[test]
    fn ids_follow_piper_structure() {
        let ids = map().ids("ha");
        assert_eq!(ids.ids, vec![1, 0, 20, 0, 14, 0, 2]);
        assert_eq!(ids.skipped, 0);
    }

    #[test]
    fn unknown_phonemes_are_skipped_and_counted() {
        let ids = map().ids("hxa");
        assert_eq!(ids.ids, vec![1, 0, 20, 0, 14, 0, 2]);
        assert_eq!(ids.skipped, 1);
        assert_eq!(map().ids("").ids, vec![1, 0, 2]);
    }

    #[test]
    fn map_without_specials_is_rejected() {
        let raw: HashMap<String, Vec<i64>> = [("a".to_owned(), vec![1])].into_iter().collect();
        assert!(PhonemeIdMap::new(&raw).is_err());
        let raw: HashMap<String, Vec<i64>> = [("ab".to_owned(), vec![1])].into_iter().collect();
        assert!(PhonemeIdMap::new(&raw).is_err());
    }

    #[test]
    fn sentences_split_at_ends_not_abbreviations_or_numbers() {
        assert_eq!(
            sentences("Hello there. Dr. Smith costs 3.5 euros! Really?! \"Yes.\" ok"),
            vec![
                "Hello there.",
                "Dr. Smith costs 3.5 euros!",
                "Really?!",
                "\"Yes.\"",
                "ok"
            ]
        );
        assert_eq!(sentences("one\n\ntwo"), vec!["one", "two"]);
        assert!(sentences("").is_empty());
        assert!(sentences("  ... ").is_empty());
    }

    #[test]
    fn clauses_carry_piper_punctuation() {
        let c = clauses("Well, at 10:30 — we \"go\"; ok?");
        let got: Vec<(&str, &str)> = c.iter().map(|c| (c.text.as_str(), c.terminator)).collect();
        assert_eq!(
            got,
            vec![
                ("Well", ", "),
                ("at 10:30", " "),
                ("we go", "; "),
                ("ok", "?")
            ]
        );
        let c = clauses("Hello?!");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].terminator, "!");
    }

    #[test]
    fn long_clauses_are_cut_at_spaces() {
        let long = "word ".repeat(200);
        let c = clauses(&long);
        assert!(c.len() > 1);
        assert!(c.iter().all(|c| c.text.len() <= MAX_CLAUSE_BYTES));
    }

    #[test]
    fn language_flags_are_removed() {
        assert_eq!(strip_language_flags("a(fr)b(en)c"), "abc");
    }
}
