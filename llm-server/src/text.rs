//! Turning the model's token pieces into text deltas a client can show (sans-IO).
//!
//! A token is a run of bytes, not of characters: a multi-byte character can be split
//! across two tokens, so [`Utf8Stream`] holds an incomplete tail until it is complete.
//! A stop string can be split across tokens too, so [`StopFilter`] holds back any tail
//! that could still become a stop string and cuts the reply where one appears.

/// Incremental UTF-8 decoding of token bytes.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Appends `bytes` and returns the text that is complete so far. Invalid bytes become
    /// U+FFFD rather than an error: a reply with one odd character beats no reply.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // `valid` bytes were just checked, so this cannot fail.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete character at the end: wait for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// What is left at the end of the reply: an incomplete character, replaced.
    pub fn finish(&mut self) -> String {
        let out = if self.pending.is_empty() {
            String::new()
        } else {
            char::REPLACEMENT_CHARACTER.to_string()
        };
        self.pending.clear();
        out
    }
}

/// Cuts the reply at the first stop string.
#[derive(Debug)]
pub struct StopFilter {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

impl StopFilter {
    /// A filter for `stops` (empty strings are ignored).
    pub fn new(stops: impl IntoIterator<Item = String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Whether a stop string has been seen; nothing more will be emitted.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Appends `text`; returns what can be sent now.
    pub fn push(&mut self, text: &str) -> String {
        if self.stopped {
            return String::new();
        }
        self.held.push_str(text);
        let first_stop = self
            .stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()))
            .min();
        if let Some(at) = first_stop {
            self.stopped = true;
            self.held.truncate(at);
            return std::mem::take(&mut self.held);
        }
        // Keep the longest tail that is the beginning of some stop string.
        let keep = self
            .stops
            .iter()
            .map(|stop| longest_suffix_prefix(&self.held, stop))
            .max()
            .unwrap_or(0);
        let emit_len = self.held.len() - keep;
        let rest = self.held.split_off(emit_len);
        std::mem::replace(&mut self.held, rest)
    }

    /// The held-back tail at the end of the reply (it never became a stop string).
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        std::mem::take(&mut self.held)
    }
}

/// The length of the longest suffix of `text` that is a proper prefix of `stop`, cut on
/// a character boundary.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&n| {
            let start = text.len() - n;
            text.is_char_boundary(start) && stop.starts_with(&text[start..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_character_is_held_until_complete() {
        let mut s = Utf8Stream::default();
        let euro = "€".as_bytes();
        assert_eq!(s.push(b"a"), "a");
        assert_eq!(s.push(&euro[..1]), "");
        assert_eq!(s.push(&euro[1..2]), "");
        assert_eq!(s.push(&[euro[2], b'b']), "€b");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn utf8_invalid_bytes_are_replaced_not_fatal() {
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(&[b'a', 0xff, b'b']), "a\u{fffd}b");
        assert_eq!(s.push(&[0xe2, 0x82]), "");
        assert_eq!(s.finish(), "\u{fffd}");
    }

    #[test]
    fn stop_string_split_across_pieces_is_cut() {
        let mut f = StopFilter::new(["<|im_end|>".to_string()]);
        assert_eq!(f.push("Hello"), "Hello");
        assert_eq!(f.push(" there<|im"), " there");
        assert_eq!(f.push("_end|> trailing"), "");
        assert!(f.stopped());
        assert_eq!(f.push("more"), "");
        assert_eq!(f.finish(), "");
    }

    #[test]
    fn a_false_start_is_released() {
        let mut f = StopFilter::new(["<|im_end|>".to_string()]);
        assert_eq!(f.push("a <|i"), "a ");
        assert_eq!(f.push("s it"), "<|is it");
        assert_eq!(f.push(" <"), " ");
        assert_eq!(f.finish(), "<");
        assert!(!f.stopped());
    }

    #[test]
    fn the_earliest_of_several_stops_wins() {
        let mut f = StopFilter::new(["END".to_string(), "\n\n".to_string(), String::new()]);
        assert_eq!(f.push("one\n\ntwo END"), "one");
        assert!(f.stopped());
    }

    #[test]
    fn held_tail_respects_character_boundaries() {
        let mut f = StopFilter::new(["éx".to_string()]);
        assert_eq!(f.push("café"), "caf");
        assert_eq!(f.push("!"), "é!");
    }
}
