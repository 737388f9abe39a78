//! The event channel between a session's task and its handle, with barge-in epochs.
//!
//! A cancel is decided on the handle side, but the task may already have queued audio
//! of the reply being cancelled. Every event is stamped with the task's reply epoch;
//! [`EventStream::cancel`] moves the handle to the next epoch and from then on drops reply
//! text and audio stamped with an older one. So "no audio of a cancelled reply after
//! cancel returns" holds however far behind the task is, without any locking.

use std::task::{Context, Poll};

use tokio::sync::mpsc;

use super::SessionEvent;

#[derive(Debug)]
struct Stamped {
    epoch: u64,
    event: SessionEvent,
}

/// Task side: sends events stamped with the current epoch.
#[derive(Debug)]
pub struct EventSender {
    tx: mpsc::Sender<Stamped>,
    epoch: u64,
}

/// Handle side: receives events, dropping stale reply output.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Stamped>,
    epoch: u64,
}

/// A connected pair. `capacity` bounds how far the task can run ahead of the call loop
/// (sending waits when full: the backend slows down, the media path does not).
pub fn channel(capacity: usize) -> (EventSender, EventStream) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (EventSender { tx, epoch: 0 }, EventStream { rx, epoch: 0 })
}

impl EventSender {
    /// Sends an event; `false` when the handle is gone (the session should stop).
    pub async fn send(&self, event: SessionEvent) -> bool {
        self.tx
            .send(Stamped {
                epoch: self.epoch,
                event,
            })
            .await
            .is_ok()
    }

    /// The task processed a cancel that moved the handle to `epoch`.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl EventStream {
    /// Starts a new epoch (barge-in); returns it, for the cancel command to carry.
    pub fn cancel(&mut self) -> u64 {
        self.epoch += 1;
        self.epoch
    }

    /// Polls for the next event that is not stale reply output.
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<SessionEvent>> {
        loop {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(stamped)) => {
                    let stale = stamped.epoch < self.epoch
                        && matches!(
                            stamped.event,
                            SessionEvent::ReplyAudio(_)
                                | SessionEvent::ReplyText(_)
                                | SessionEvent::StageLatency { .. }
                        );
                    if !stale {
                        return Poll::Ready(Some(stamped.event));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test]
    async fn audio_queued_before_a_cancel_is_never_delivered() {
        let (mut tx, mut rx) = channel(8);
        assert!(tx.send(SessionEvent::ReplyAudio(vec![1; 160])).await);
        assert!(tx.send(SessionEvent::ReplyText("old".into())).await);
        assert!(tx.send(SessionEvent::CallerText("kept".into())).await);
        let epoch = rx.cancel();
        // The task has not seen the cancel yet: its audio is still old.
        assert!(tx.send(SessionEvent::ReplyAudio(vec![2; 160])).await);
        tx.set_epoch(epoch);
        assert!(tx.send(SessionEvent::ReplyAudio(vec![3; 160])).await);
        drop(tx);
        let mut got = Vec::new();
        while let Some(event) = poll_fn(|cx| rx.poll_event(cx)).await {
            got.push(event);
        }
        assert_eq!(
            got,
            [
                SessionEvent::CallerText("kept".into()),
                SessionEvent::ReplyAudio(vec![3; 160]),
            ]
        );
    }
}
