//! The engine's call cap (`server.max_calls`): a place per live call, taken when the
//! call arrives and given back when it ends, whichever way it ends.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Places for live calls; no cap when built with 0.
#[derive(Debug, Clone)]
pub struct CallSlots {
    places: Option<Arc<Semaphore>>,
}

/// One live call's place, given back when dropped.
#[derive(Debug)]
pub struct CallSlot {
    _permit: Option<OwnedSemaphorePermit>,
}

impl CallSlots {
    /// `max_calls` places; 0: as many as come.
    pub fn new(max_calls: u32) -> Self {
        Self {
            places: (max_calls > 0).then(|| Arc::new(Semaphore::new(max_calls as usize))),
        }
    }

    /// A place for a new call, or `None` when every place is taken.
    pub fn try_admit(&self) -> Option<CallSlot> {
        match &self.places {
            None => Some(CallSlot { _permit: None }),
            Some(places) => places
                .clone()
                .try_acquire_owned()
                .ok()
                .map(|permit| CallSlot {
                    _permit: Some(permit),
                }),
        }
    }

    /// Every place is taken.
    pub fn is_full(&self) -> bool {
        self.places
            .as_ref()
            .is_some_and(|places| places.available_permits() == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_beyond_the_cap_are_refused_until_a_place_is_given_back() {
        let slots = CallSlots::new(2);
        let first = slots.try_admit().expect("first");
        let second = slots.try_admit().expect("second");
        assert!(slots.is_full());
        assert!(
            slots.try_admit().is_none(),
            "a third call while two are live"
        );
        drop(first);
        assert!(!slots.is_full());
        let third = slots.try_admit().expect("the first call's place");
        assert!(slots.try_admit().is_none());
        drop((second, third));
        assert!(slots.try_admit().is_some());
    }

    #[test]
    fn zero_means_no_cap() {
        let slots = CallSlots::new(0);
        let held: Vec<_> = (0..10_000).map(|_| slots.try_admit()).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(!slots.is_full());
    }
}
