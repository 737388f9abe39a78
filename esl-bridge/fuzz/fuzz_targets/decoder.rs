//! FreeSWITCH -> client framing: chunking must not change the result, the decoder must
//! account for every byte it removes, and no frame may make `Message::from_frame` panic.
#![no_main]

use esl_bridge::codec::EslCodec;
use esl_bridge::frame::FrameDecoder;
use esl_bridge::message::Message;
use esl_bridge_fuzz::{assert_same, check_frame, drive, Plan, RawFrames};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (plan, stream) = Plan::parse(data);

    // Reference: the whole stream in one read, through the tokio codec.
    let whole = drive(
        &mut EslCodec::new(plan.limits),
        stream,
        &[stream.len()],
        check_frame,
    );
    // The same bytes cut at fuzzer-chosen points, through the raw sans-IO decoder.
    let chunked = drive(
        &mut RawFrames(FrameDecoder::new(plan.limits)),
        stream,
        &plan.cuts(stream.len()),
        check_frame,
    );
    assert_same(&whole, &chunked, &plan);

    for frame in whole.items {
        // Any Ok/Err is fine; a message-level error must not be a panic.
        let _ = Message::from_frame(frame);
    }
});
