//! A fixed-capacity ring of fixed-size frames in one preallocated buffer.
//!
//! The playout queue lives here: pushing copies into a slot, popping copies out, and
//! overflow overwrites the oldest slot. Nothing allocates after construction, which is
//! how the send path keeps the "no per-frame allocation" rule.

#[derive(Debug)]
pub(crate) struct FrameRing {
    buf: Box<[u8]>,
    frame_bytes: usize,
    capacity: usize,
    head: usize,
    len: usize,
}

impl FrameRing {
    /// `capacity` and `frame_bytes` must be non-zero (checked by the caller).
    pub(crate) fn new(capacity: usize, frame_bytes: usize) -> Self {
        Self {
            buf: vec![0; capacity.saturating_mul(frame_bytes)].into_boxed_slice(),
            frame_bytes,
            capacity,
            head: 0,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Append one frame, letting `fill` write its bytes into the slot. Returns `true` when
    /// the queue was full and the oldest frame was overwritten.
    pub(crate) fn push_with(&mut self, fill: impl FnOnce(&mut [u8])) -> bool {
        let dropped = self.len == self.capacity;
        if dropped {
            // The new frame takes the oldest one's place at the tail.
            self.head = (self.head + 1) % self.capacity;
            self.len -= 1;
        }
        let tail = (self.head + self.len) % self.capacity;
        fill(self.slot_mut(tail));
        self.len += 1;
        dropped
    }

    /// Copy the oldest frame into `out` (exactly `frame_bytes` long) and remove it.
    pub(crate) fn pop_into(&mut self, out: &mut [u8]) -> bool {
        if self.len == 0 {
            return false;
        }
        let start = self.head * self.frame_bytes;
        if let Some(src) = self.buf.get(start..start + self.frame_bytes) {
            out.copy_from_slice(src);
        }
        self.head = (self.head + 1) % self.capacity;
        self.len -= 1;
        true
    }

    /// Discard everything; returns how many frames were queued.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.len;
        self.head = 0;
        self.len = 0;
        n
    }

    fn slot_mut(&mut self, index: usize) -> &mut [u8] {
        let start = index * self.frame_bytes;
        &mut self.buf[start..start + self.frame_bytes]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(r: &mut FrameRing, v: u8) -> bool {
        r.push_with(|slot| slot.fill(v))
    }

    fn pop(r: &mut FrameRing) -> Option<u8> {
        let mut out = [0u8; 4];
        r.pop_into(&mut out).then(|| {
            assert!(out.iter().all(|b| *b == out[0]));
            out[0]
        })
    }

    #[test]
    fn fifo_with_wraparound() {
        let mut r = FrameRing::new(3, 4);
        for round in 0..5u8 {
            assert!(!push(&mut r, round * 2));
            assert!(!push(&mut r, round * 2 + 1));
            assert_eq!(pop(&mut r), Some(round * 2));
            assert_eq!(pop(&mut r), Some(round * 2 + 1));
        }
        assert_eq!(pop(&mut r), None);
    }

    #[test]
    fn overflow_drops_the_oldest() {
        let mut r = FrameRing::new(3, 4);
        let dropped: Vec<bool> = (0..7).map(|v| push(&mut r, v)).collect();
        assert_eq!(dropped, [false, false, false, true, true, true, true]);
        assert_eq!(r.len(), 3);
        assert_eq!(
            (pop(&mut r), pop(&mut r), pop(&mut r)),
            (Some(4), Some(5), Some(6))
        );
        assert!(r.is_empty());
    }

    #[test]
    fn clear_empties() {
        let mut r = FrameRing::new(2, 4);
        push(&mut r, 1);
        push(&mut r, 2);
        assert_eq!(r.clear(), 2);
        assert_eq!(pop(&mut r), None);
        push(&mut r, 3);
        assert_eq!(pop(&mut r), Some(3));
    }
}
