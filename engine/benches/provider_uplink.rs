//! Engine-side cost of one 20 ms chunk of caller audio on its way to the provider:
//! wire conversion (µ-law passthrough or resampling to 24 kHz), base64, the JSON event,
//! and (last group) the WebSocket write over loopback to a server that drains it.
//!
//! `cargo bench -p engine --bench provider_uplink`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::backend::provider::protocol::{encode_audio, ClientEvent, WireAudio};
use engine::backend::provider::wire_audio::Uplink;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

fn frame(rate: u32) -> Vec<i16> {
    (0..rate as usize / 50)
        .map(|i| ((i as f32 * 0.07).sin() * 6000.0) as i16)
        .collect()
}

fn append_json(uplink: &mut Uplink, pcm: &[i16], wire: &mut Vec<u8>) -> String {
    wire.clear();
    uplink.encode(pcm, wire).expect("encode");
    let event = ClientEvent::InputAudioAppend {
        audio: encode_audio(wire),
    };
    serde_json::to_string(&event).expect("json")
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("uplink_chunk_encode");
    group.throughput(Throughput::Elements(1));
    for (name, rate, format) in [
        ("pcmu_8k_passthrough", 8000, WireAudio::Pcmu),
        ("pcm16_8k_to_24k", 8000, WireAudio::Pcm24k),
        ("pcm16_16k_to_24k", 16000, WireAudio::Pcm24k),
    ] {
        let pcm = frame(rate);
        let mut uplink = Uplink::new(rate, format).expect("uplink");
        let mut wire = Vec::new();
        group.bench_function(name, |b| {
            b.iter(|| append_json(&mut uplink, std::hint::black_box(&pcm), &mut wire))
        });
    }
    group.finish();
}

fn encode_and_send(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let socket = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("ws");
            while ws.next().await.is_some() {}
        });
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
            .await
            .expect("connect");
        socket
    });
    let socket = tokio::sync::Mutex::new(socket);
    let uplink = std::sync::Mutex::new(Uplink::new(8000, WireAudio::Pcmu).expect("uplink"));
    let pcm = frame(8000);
    let mut group = c.benchmark_group("uplink_chunk_encode_and_send");
    group.throughput(Throughput::Elements(1));
    group.bench_function("pcmu_8k_loopback_ws", |b| {
        b.to_async(&runtime).iter(|| async {
            let json = {
                let mut wire = Vec::new();
                let mut uplink = uplink.lock().expect("uplink");
                append_json(&mut uplink, &pcm, &mut wire)
            };
            socket
                .lock()
                .await
                .send(Message::text(json))
                .await
                .expect("send");
        })
    });
    group.finish();
}

criterion_group!(benches, encode, encode_and_send);
criterion_main!(benches);
