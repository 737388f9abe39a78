//! The unicast media leg against the recorded FreeSWITCH captures (real loopback UDP), and
//! its pacing, flush and overflow behaviour under paused Tokio time (a recording sink).

// Tests fail loudly on broken fixtures or sockets; the no-unwrap rule is for library code.
#![allow(clippy::unwrap_used)]

mod common;
use common::fixture_dir;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use esl_bridge::media::{
    free_udp_port, MediaCounters, MediaError, MediaFormat, PushOutcome, UnicastConfig, UnicastLeg,
    UnicastSender,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

const MS: Duration = Duration::from_millis(1);
const FRAME: Duration = Duration::from_millis(20);
/// Safety net for loopback I/O that should complete at once; never a wait for a condition.
const IO_LIMIT: Duration = Duration::from_secs(5);

struct Capture {
    native: bool,
    /// FreeSWITCH's datagrams, split by the per-packet `len`.
    datagrams: Vec<Vec<u8>>,
    rms_le: Vec<f64>,
}

fn load(name: &str) -> Capture {
    let dir = fixture_dir().join("media-unicast");
    let bin = std::fs::read(dir.join(format!("{name}.udp_rx.bin"))).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.udp_rx.json"))).unwrap())
            .unwrap();
    let mut datagrams = Vec::new();
    let mut rms_le = Vec::new();
    let mut off = 0;
    for p in json["packets"].as_array().unwrap() {
        let len = p["len"].as_u64().unwrap() as usize;
        datagrams.push(bin[off..off + len].to_vec());
        rms_le.push(p["rms_le"].as_f64().unwrap());
        off += len;
    }
    assert_eq!(off, bin.len(), "{name}: .json lengths cover the .bin");
    Capture {
        native: json["native"].as_bool().unwrap(),
        datagrams,
        rms_le,
    }
}

/// A loopback socket standing in for FreeSWITCH's unicast port, and the leg pointed at it.
async fn fs_and_leg(format: MediaFormat, queue_frames: usize) -> (UdpSocket, UnicastLeg) {
    let fs = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut config = UnicastConfig::new(format, fs.local_addr().unwrap());
    config.queue_frames = queue_frames;
    let leg = UnicastLeg::bind(config).await.unwrap();
    (fs, leg)
}

fn leg_addr(leg: &UnicastLeg) -> SocketAddr {
    let p = leg.params();
    SocketAddr::new(p.remote_ip, p.remote_port)
}

/// FreeSWITCH → leg: every datagram of the capture, byte-identical and in order; then
/// leg → FreeSWITCH: the same frames back, byte-identical, from the leg's socket, paced.
async fn round_trip(name: &str, format: MediaFormat) {
    let capture = load(name);
    let total = capture.datagrams.len();
    let (fs, leg) = fs_and_leg(format, total + 10).await;
    let params = leg.params();
    assert_eq!(params.local_port, fs.local_addr().unwrap().port());
    assert_eq!(params.local_ip, fs.local_addr().unwrap().ip());
    assert_eq!(params.native, capture.native);
    let to_leg = leg_addr(&leg);
    assert_eq!(to_leg, leg.local_addr());
    let counters = leg.counters();
    let (mut rx, tx) = leg.split().unwrap();

    // Lockstep (send one, receive one) so the leg's receive buffer can never overflow.
    let mut delivered = Vec::with_capacity(total);
    for (i, datagram) in capture.datagrams.iter().enumerate() {
        fs.send_to(datagram, to_leg).await.unwrap();
        let frame = timeout(IO_LIMIT, rx.recv()).await.unwrap().unwrap();
        let no_media = datagram.iter().all(|b| *b == 0xFF);
        assert_eq!(frame.is_cng(), no_media, "{name} packet {i}");
        assert_eq!(
            frame.bytes().len(),
            format.frame_bytes(),
            "{name} packet {i}"
        );
        if datagram.len() == format.frame_bytes() {
            assert_eq!(frame.bytes(), &datagram[..], "{name} packet {i}");
        } else {
            // Native mode's no-media frames come at the decoded size (320 B of 0xFF):
            // delivered as one frame of µ-law silence (also 0xFF).
            assert!(capture.native && no_media && i < 3, "{name} packet {i}");
            assert!(frame.bytes().iter().all(|b| *b == 0xFF));
        }
        if let Some(samples) = frame.samples() {
            // Little-endian, as recorded: the RMS matches the fixture's `rms_le` (truncated).
            let samples: Vec<i16> = samples.collect();
            assert_eq!(samples.len(), format.samples_per_frame());
            let rms = (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>()
                / samples.len() as f64)
                .sqrt();
            assert!(
                (rms - capture.rms_le[i]).abs() < 1.0,
                "{name} packet {i}: {rms}"
            );
        } else {
            assert!(capture.native);
        }
        delivered.push(frame.bytes().to_vec());
    }
    let c = counters.snapshot();
    assert_eq!(c.frames_in, total as u64);
    assert_eq!(
        c.cng_frames, 3,
        "the first three 0xFF frames are normal, counted as CNG"
    );
    assert_eq!(
        (c.dropped_bad_size, c.wrong_source, c.recv_errors),
        (0, 0, 0)
    );

    // Back to FreeSWITCH, paced in real time.
    let started = std::time::Instant::now();
    for frame in &delivered {
        assert_eq!(tx.push(frame).unwrap(), PushOutcome::Queued);
    }
    let mut buf = vec![0u8; 4096];
    for (i, frame) in delivered.iter().enumerate() {
        let (n, from) = timeout(IO_LIMIT, fs.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            from, to_leg,
            "{name}: frames come from the leg's own socket"
        );
        assert_eq!(&buf[..n], &frame[..], "{name} frame {i} back");
    }
    // Paced, not burst: frame n cannot leave before n·20 ms after the first.
    let span = started.elapsed();
    assert!(
        span >= FRAME * (total as u32 - 1),
        "{name}: {total} frames took only {span:?}"
    );
    tx.finish().await;
    let c = counters.snapshot();
    assert_eq!(c.frames_out, total as u64);
    assert_eq!((c.dropped_overflow, c.send_errors), (0, 0));
}

#[tokio::test]
async fn round_trip_pcmu_l16_8k() {
    round_trip("outbound_unicast_pcmu_l16", MediaFormat::L16_8K).await;
}

#[tokio::test]
async fn round_trip_g722_l16_16k() {
    round_trip("outbound_unicast_g722_l16", MediaFormat::L16_16K).await;
}

#[tokio::test]
async fn round_trip_opus_l16_48k() {
    round_trip("outbound_unicast_opus_l16", MediaFormat::L16_48K).await;
}

#[tokio::test]
async fn round_trip_pcmu_native() {
    round_trip("outbound_unicast_pcmu_native", MediaFormat::PCMU).await;
}

#[tokio::test]
async fn strangers_and_bad_sizes_are_counted_and_ignored() {
    let (fs, leg) = fs_and_leg(MediaFormat::L16_8K, 10).await;
    let to_leg = leg_addr(&leg);
    let counters = leg.counters();
    let (mut rx, _tx) = leg.split().unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    stranger.send_to(&[1; 320], to_leg).await.unwrap();
    for bad in [&[2u8; 100][..], &[3; 321], &[4; 5000], &[], &[0xFF; 640]] {
        fs.send_to(bad, to_leg).await.unwrap();
    }
    // Datagrams from two sockets may be queued in either order; keep feeding good frames
    // until all the bad ones have been seen (bounded).
    let mut good = 0;
    for _ in 0..50 {
        fs.send_to(&[5; 320], to_leg).await.unwrap();
        let frame = timeout(IO_LIMIT, rx.recv()).await.unwrap().unwrap();
        assert_eq!(frame.bytes(), &[5; 320][..]);
        assert!(!frame.is_cng());
        good += 1;
        let c = counters.snapshot();
        if c.wrong_source == 1 && c.dropped_bad_size == 5 {
            break;
        }
    }
    let c = counters.snapshot();
    assert_eq!((c.wrong_source, c.dropped_bad_size), (1, 5));
    assert_eq!((c.frames_in, c.cng_frames), (good, 0));
}

#[tokio::test]
async fn native_accepts_decoded_size_only_for_cng() {
    let (fs, leg) = fs_and_leg(MediaFormat::PCMU, 10).await;
    let to_leg = leg_addr(&leg);
    let counters = leg.counters();
    let (mut rx, _tx) = leg.split().unwrap();
    // A 320 B datagram that is not all 0xFF is just the wrong size in native mode.
    let mut not_cng = [0xFF; 320];
    not_cng[100] = 0;
    fs.send_to(&not_cng, to_leg).await.unwrap();
    fs.send_to(&[0x7F; 160], to_leg).await.unwrap();
    let frame = timeout(IO_LIMIT, rx.recv()).await.unwrap().unwrap();
    assert_eq!(frame.bytes(), &[0x7F; 160][..]);
    assert!(frame.samples().is_none());
    let c = counters.snapshot();
    assert_eq!((c.dropped_bad_size, c.frames_in, c.cng_frames), (1, 1, 0));
}

#[tokio::test]
async fn config_errors_are_values() {
    let fs = SocketAddr::from(([127, 0, 0, 1], 9000));
    let mut wildcard = UnicastConfig::new(MediaFormat::L16_8K, fs);
    wildcard.bind = SocketAddr::from(([0, 0, 0, 0], 0));
    assert!(matches!(
        UnicastLeg::bind(wildcard.clone()).await,
        Err(MediaError::Config(_))
    ));
    wildcard.advertise_ip = Some([127, 0, 0, 1].into());
    let leg = UnicastLeg::bind(wildcard).await.unwrap();
    assert_eq!(
        leg.params().remote_ip,
        std::net::IpAddr::from([127, 0, 0, 1])
    );

    let no_port = UnicastConfig::new(MediaFormat::L16_8K, SocketAddr::from(([127, 0, 0, 1], 0)));
    assert!(matches!(
        UnicastLeg::bind(no_port).await,
        Err(MediaError::Config(_))
    ));
    let mut no_queue = UnicastConfig::new(MediaFormat::L16_8K, fs);
    no_queue.queue_frames = 0;
    assert!(matches!(
        UnicastLeg::bind(no_queue).await,
        Err(MediaError::Config(_))
    ));
    let holder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut taken = UnicastConfig::new(MediaFormat::L16_8K, fs);
    taken.bind = holder.local_addr().unwrap();
    assert!(matches!(
        UnicastLeg::bind(taken).await,
        Err(MediaError::Bind { .. })
    ));
}

#[tokio::test]
async fn free_port_helper_gives_a_bindable_port() {
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let port = free_udp_port(ip).unwrap();
    assert_ne!(port, 0);
    let config = UnicastConfig::new(MediaFormat::L16_16K, SocketAddr::new(ip, port));
    let leg = UnicastLeg::bind(config).await.unwrap();
    assert_eq!(leg.params().local_port, port);
    assert_eq!(leg.params().remote_port, leg.local_addr().port());
}

// ---- Pacing under paused time, with a sink that records when each frame left. ----

type Sent = mpsc::UnboundedReceiver<(Instant, u32)>;

/// A sink recording (send time, tag) per frame; the tag is the frame's first 4 bytes.
fn recorder() -> (
    impl FnMut(&[u8]) -> std::io::Result<()> + Send + 'static,
    Sent,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sink = move |frame: &[u8]| {
        let tag = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let _ = tx.send((Instant::now(), tag));
        Ok(())
    };
    (sink, rx)
}

fn tagged(tag: u32) -> [u8; 320] {
    let mut frame = [0u8; 320];
    frame[..4].copy_from_slice(&tag.to_le_bytes());
    frame
}

fn sender(queue_frames: usize) -> (UnicastSender, Sent, Arc<MediaCounters>) {
    let (sink, sent) = recorder();
    let counters = Arc::new(MediaCounters::default());
    let tx =
        UnicastSender::spawn(MediaFormat::L16_8K, queue_frames, sink, counters.clone()).unwrap();
    (tx, sent, counters)
}

async fn next(sent: &mut Sent) -> (Instant, u32) {
    sent.recv().await.unwrap()
}

/// Everything the sink recorded so far, without waiting.
fn drain(sent: &mut Sent) -> Vec<(Instant, u32)> {
    std::iter::from_fn(|| sent.try_recv().ok()).collect()
}

fn assert_paced(times: &[Instant]) {
    for (i, w) in times.windows(2).enumerate() {
        let gap = w[1] - w[0];
        assert!(gap >= FRAME - MS && gap <= FRAME + MS, "gap {i}: {gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn pacing_holds_20ms_over_10s_without_drift() {
    let (tx, mut sent, counters) = sender(500);
    for n in 0..500 {
        assert_eq!(tx.push(&tagged(n)).unwrap(), PushOutcome::Queued);
    }
    let mut times = Vec::new();
    for n in 0..500 {
        let (t, tag) = next(&mut sent).await;
        assert_eq!(tag, n);
        times.push(t);
    }
    assert_paced(&times);
    // 500 frames are 10 s of audio: the last starts 9.98 s after the first, ends at 10 s.
    let audio = times[499] + FRAME - times[0];
    assert!(audio >= Duration::from_secs(10) - MS && audio <= Duration::from_secs(10) + MS);
    let c = counters.snapshot();
    assert_eq!(
        (c.frames_out, c.late_sends, c.dropped_overflow),
        (500, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn real_time_producer_keeps_the_schedule() {
    // The producer pushes 5 frames every 100 ms, exactly keeping up: the queue runs dry at
    // every batch boundary, and the restart must neither drift nor overlap.
    let (tx, mut sent, counters) = sender(50);
    let producer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        for batch in 0..100 {
            tick.tick().await;
            for k in 0..5 {
                tx.push(&tagged(batch * 5 + k)).unwrap();
            }
        }
        tx
    });
    let mut times = Vec::new();
    for n in 0..500 {
        let (t, tag) = next(&mut sent).await;
        assert_eq!(tag, n);
        times.push(t);
    }
    assert_paced(&times);
    let span = times[499] - times[0];
    assert!(
        span >= FRAME * 499 - MS && span <= FRAME * 499 + MS,
        "{span:?}"
    );
    assert_eq!(counters.snapshot().late_sends, 0);
    drop(producer.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn starved_task_counts_a_late_send_and_does_not_burst() {
    let (tx, mut sent, counters) = sender(50);
    for n in 0..20 {
        tx.push(&tagged(n)).unwrap();
    }
    let (t0, _) = next(&mut sent).await;
    // The pacing task now sleeps until t0 + 20 ms. Starve it: the clock jumps 65 ms at once,
    // as if the runtime had not polled it for three frames.
    tokio::time::advance(Duration::from_millis(65)).await;
    let mut times = vec![t0];
    for n in 1..20 {
        let (t, tag) = next(&mut sent).await;
        assert_eq!(tag, n, "no frame is skipped");
        times.push(t);
    }
    // One late frame at the wake-up, then a fresh 20 ms schedule: no catch-up burst.
    assert_eq!(times[1], t0 + Duration::from_millis(65));
    assert_paced(&times[1..]);
    assert_eq!(counters.snapshot().late_sends, 1);
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn flush_stops_output_within_one_frame() {
    let (tx, mut sent, counters) = sender(200);
    for n in 0..100 {
        tx.push(&tagged(n)).unwrap();
    }
    let (t0, _) = next(&mut sent).await;
    next(&mut sent).await;
    next(&mut sent).await;
    // Mid-frame (frame 2 is playing), the caller barges in.
    tokio::time::sleep_until(t0 + Duration::from_millis(45)).await;
    assert_eq!(tx.flush(), 97);
    assert_eq!(tx.queued(), 0);
    // The next frame queued right away plays when frame 2's slot ends (60 ms): well within
    // one frame, and without overlapping the audio already sent.
    let pushed = Instant::now();
    tx.push(&tagged(1000)).unwrap();
    let (t, tag) = next(&mut sent).await;
    assert_eq!(
        tag, 1000,
        "nothing queued before the flush is sent after it"
    );
    assert!(t - pushed <= FRAME, "{:?}", t - pushed);
    assert_eq!(t, t0 + Duration::from_millis(60));

    // Again with 100 frames queued and a long quiet period after the flush.
    for n in 0..100 {
        tx.push(&tagged(2000 + n)).unwrap();
    }
    next(&mut sent).await;
    next(&mut sent).await;
    tokio::time::sleep(Duration::from_millis(7)).await;
    let sent_before = counters.snapshot().frames_out;
    assert_eq!(tx.flush(), 98);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_flush = drain(&mut sent);
    assert!(
        after_flush.len() <= 1,
        "{} frames after the flush",
        after_flush.len()
    );
    assert!(counters.snapshot().frames_out <= sent_before + 1);
    // After a quiet period the next frame plays at once.
    let pushed = Instant::now();
    tx.push(&tagged(3000)).unwrap();
    let (t, tag) = next(&mut sent).await;
    assert_eq!((tag, t), (3000, pushed));
}

#[tokio::test(start_paused = true)]
async fn overflow_drops_the_oldest_and_counts_it() {
    let (tx, mut sent, counters) = sender(4);
    // The pacing task cannot run between these pushes (current-thread runtime).
    let outcomes: Vec<PushOutcome> = (0..10).map(|n| tx.push(&tagged(n)).unwrap()).collect();
    assert_eq!(outcomes[..4], [PushOutcome::Queued; 4]);
    assert_eq!(outcomes[4..], [PushOutcome::DroppedOldest; 6]);
    assert_eq!(counters.snapshot().dropped_overflow, 6);
    let tags: Vec<u32> = [
        next(&mut sent).await,
        next(&mut sent).await,
        next(&mut sent).await,
        next(&mut sent).await,
    ]
    .iter()
    .map(|(_, tag)| *tag)
    .collect();
    assert_eq!(tags, [6, 7, 8, 9], "the newest frames survive");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(drain(&mut sent).is_empty());
}

#[tokio::test(start_paused = true)]
async fn wrong_input_is_an_error_not_a_panic() {
    let (tx, _sent, counters) = sender(4);
    assert!(matches!(
        tx.push(&[0; 319]),
        Err(MediaError::FrameSize {
            got: 319,
            expected: 320
        })
    ));
    assert!(matches!(
        tx.push(&[]),
        Err(MediaError::FrameSize { got: 0, .. })
    ));
    assert!(matches!(
        tx.push_samples(&[0; 161]),
        Err(MediaError::FrameSize { got: 322, .. })
    ));
    assert_eq!(tx.queued(), 0);
    assert_eq!(counters.snapshot(), Default::default());

    let (sink, _) = recorder();
    let native = UnicastSender::spawn(MediaFormat::PCMU, 4, sink, counters.clone()).unwrap();
    assert!(matches!(
        native.push_samples(&[0; 80]),
        Err(MediaError::NotL16)
    ));
    assert!(native.push(&[0xFF; 160]).is_ok());

    let (sink, _) = recorder();
    assert!(matches!(
        UnicastSender::spawn(MediaFormat::L16_8K, 0, sink, counters),
        Err(MediaError::Config(_))
    ));
}

#[test]
fn spawning_outside_a_runtime_is_an_error() {
    let (sink, _) = recorder();
    let result = UnicastSender::spawn(MediaFormat::L16_8K, 4, sink, Arc::default());
    assert!(matches!(result, Err(MediaError::NoRuntime)));
}

#[tokio::test(start_paused = true)]
async fn push_samples_encodes_little_endian() {
    let (tx, mut sent, _) = sender(4);
    let mut samples = [0i16; 160];
    samples[0] = 0x0201;
    samples[1] = -2; // 0xFFFE
    tx.push_samples(&samples).unwrap();
    let (_, tag) = next(&mut sent).await;
    assert_eq!(tag, u32::from_le_bytes([0x01, 0x02, 0xFE, 0xFF]));
}

#[tokio::test(start_paused = true)]
async fn drop_stops_and_finish_drains() {
    let (tx, mut sent, _) = sender(50);
    for n in 0..10 {
        tx.push(&tagged(n)).unwrap();
    }
    next(&mut sent).await;
    drop(tx);
    // The task ends (its sink, holding the channel's sender, is dropped): nothing more.
    assert!(sent.recv().await.is_none());

    let (tx, mut sent, counters) = sender(50);
    for n in 0..10 {
        tx.push(&tagged(n)).unwrap();
    }
    let started = Instant::now();
    tx.finish().await;
    assert_eq!(
        Instant::now() - started,
        FRAME * 9,
        "played out in real time"
    );
    let tags: Vec<u32> = drain(&mut sent).iter().map(|(_, tag)| *tag).collect();
    assert_eq!(tags, (0..10).collect::<Vec<_>>());
    assert!(sent.recv().await.is_none());
    assert_eq!(counters.snapshot().frames_out, 10);
}
