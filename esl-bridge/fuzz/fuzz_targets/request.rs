//! Client -> FreeSWITCH commands through `RequestCodec` (the simulator side): same
//! chunking and byte-accounting invariants as the frame decoder.
#![no_main]

use esl_bridge::codec::RequestCodec;
use esl_bridge_fuzz::{assert_same, check_request, drive, Plan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // RequestCodec has no way to set limits, so the plan's limits are ignored.
    let (plan, stream) = Plan::parse(data);
    let whole = drive(
        &mut RequestCodec::default(),
        stream,
        &[stream.len()],
        check_request,
    );
    let chunked = drive(
        &mut RequestCodec::default(),
        stream,
        &plan.cuts(stream.len()),
        check_request,
    );
    assert_same(&whole, &chunked, &plan);
});
