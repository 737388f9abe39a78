//! The scripted brain: intents recognised by whole-word phrases, each with a fixed reply.
//! It does not understand anything beyond its phrase lists.

use tokio::sync::mpsc;

use super::{Brain, BrainError, Reply, Speaker, Turn};

/// One thing a caller may want, recognised by phrases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// Name, for logs and the cost record.
    pub name: String,
    /// Phrases that select it (matched on whole words, case-insensitive).
    pub phrases: Vec<String>,
    /// What to say.
    pub reply: String,
    /// Whether saying it ends the call.
    pub ends_call: bool,
}

impl Intent {
    /// An intent from string slices.
    pub fn new(name: &str, phrases: &[&str], reply: &str, ends_call: bool) -> Self {
        Self {
            name: name.to_owned(),
            phrases: phrases.iter().map(|p| (*p).to_owned()).collect(),
            reply: reply.to_owned(),
            ends_call,
        }
    }
}

/// Intents checked in order; the first whose phrase occurs in the caller's last turn wins.
#[derive(Debug, Clone)]
pub struct ScriptedBrain {
    intents: Vec<(Intent, Vec<Vec<String>>)>,
    fallback: String,
}

impl ScriptedBrain {
    /// A brain with `intents` (checked in order) and a `fallback` reply.
    pub fn new(intents: Vec<Intent>, fallback: impl Into<String>) -> Self {
        let intents = intents
            .into_iter()
            .map(|intent| {
                let phrases = intent
                    .phrases
                    .iter()
                    .map(|p| words(p))
                    .filter(|w| !w.is_empty())
                    .collect();
                (intent, phrases)
            })
            .collect();
        Self {
            intents,
            fallback: fallback.into(),
        }
    }

    /// The embedded English default: a restaurant line that can take a booking request,
    /// give opening hours, hand over to a person and say goodbye.
    pub fn restaurant_demo() -> Self {
        Self::new(
            vec![
                Intent::new("goodbye", &["bye", "goodbye", "that's all", "that is all", "hang up"], "Thank you for calling. Goodbye!", true),
                Intent::new("human", &["human", "person", "agent", "someone", "operator"], "I will connect you with a colleague. One moment, please.", false),
                Intent::new("booking", &["book", "table", "reservation", "reserve"], "Of course. I have noted your request for a table. Is there anything else I can do for you?", false),
                Intent::new("hours", &["open", "opening", "hours", "close", "closing"], "We are open every day from noon until eleven in the evening.", false),
                Intent::new("greeting", &["hello", "hi", "good morning", "good evening"], "Hello! How can I help you today?", false),
            ],
            "Sorry, I did not catch that. You can book a table, ask for our opening hours, or ask for a person.",
        )
    }

    fn pick(&self, said: &[String]) -> Option<&Intent> {
        self.intents
            .iter()
            .find(|(_, phrases)| phrases.iter().any(|p| contains_run(said, p)))
            .map(|(intent, _)| intent)
    }
}

impl Brain for ScriptedBrain {
    fn respond(&self, history: &[Turn]) -> Result<Reply, BrainError> {
        let last = history
            .iter()
            .rev()
            .find(|t| t.speaker == Speaker::Caller)
            .ok_or(BrainError::NoCallerTurn)?;
        let intent = self.pick(&words(&last.text));
        let text = intent.map_or(self.fallback.as_str(), |i| i.reply.as_str());
        // Word-sized chunks, like an LLM's tokens, so downstream streaming is exercised.
        let chunks: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
        let (tx, rx) = mpsc::channel(chunks.len().max(1));
        for chunk in chunks {
            // Capacity equals the chunk count, so this never fails.
            let _ = tx.try_send(Ok(chunk));
        }
        Ok(Reply {
            chunks: rx,
            intent: intent.map(|i| i.name.clone()),
            ends_call: intent.is_some_and(|i| i.ends_call),
        })
    }
}

/// Lower-case words without punctuation (apostrophes kept: "that's").
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn contains_run(haystack: &[String], needle: &[String]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::brain::collect;

    fn caller(text: &str) -> Vec<Turn> {
        vec![Turn {
            speaker: Speaker::Caller,
            text: text.into(),
        }]
    }

    #[tokio::test]
    async fn recognises_intents_on_whole_words() {
        let brain = ScriptedBrain::restaurant_demo();
        let reply = brain
            .respond(&caller(
                "Please book a table for two people tomorrow evening.",
            ))
            .expect("reply");
        assert_eq!(reply.intent.as_deref(), Some("booking"));
        assert!(!reply.ends_call);
        assert!(collect(reply)
            .await
            .expect("text")
            .starts_with("Of course."));
        // "hi" must not match inside "this"; "table" must not match "tablet".
        let reply = brain.respond(&caller("this tablet")).expect("reply");
        assert_eq!(reply.intent, None);
    }

    #[tokio::test]
    async fn goodbye_ends_the_call_and_wins_over_other_intents() {
        let brain = ScriptedBrain::restaurant_demo();
        let reply = brain
            .respond(&caller("No, that's all, thank you. Bye!"))
            .expect("reply");
        assert_eq!(reply.intent.as_deref(), Some("goodbye"));
        assert!(reply.ends_call);
    }

    #[tokio::test]
    async fn answers_the_last_caller_turn_and_falls_back() {
        let brain = ScriptedBrain::restaurant_demo();
        let history = vec![
            Turn {
                speaker: Speaker::Caller,
                text: "hello".into(),
            },
            Turn {
                speaker: Speaker::Agent,
                text: "Hello! How can I help you today?".into(),
            },
            Turn {
                speaker: Speaker::Caller,
                text: "what's the weather like".into(),
            },
        ];
        let reply = brain.respond(&history).expect("reply");
        assert_eq!(reply.intent, None);
        assert!(collect(reply).await.expect("text").starts_with("Sorry"));
        assert_eq!(brain.respond(&[]).err(), Some(BrainError::NoCallerTurn));
    }

    #[tokio::test]
    async fn streams_word_chunks_that_rebuild_the_reply() {
        let brain = ScriptedBrain::new(
            vec![Intent::new(
                "x",
                &["good morning"],
                "Good morning to you!",
                false,
            )],
            "fallback",
        );
        let mut reply = brain.respond(&caller("GOOD morning")).expect("reply");
        let mut chunks = Vec::new();
        while let Some(c) = reply.chunks.recv().await {
            chunks.push(c.expect("chunk"));
        }
        assert_eq!(chunks, ["Good ", "morning ", "to ", "you!"]);
    }
}
