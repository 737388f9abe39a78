//! `tom serve`: the FreeSWITCH-facing shell. Today each call is an echo over the unicast
//! leg (the media path end to end); the conversation backends replace the echo later.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use esl_bridge::connection::Incoming;
use esl_bridge::media::{free_udp_port, MediaFormat, UnicastConfig, UnicastLeg};
use esl_bridge::outbound::{Call, OutboundConfig, OutboundServer};
use ipnet::IpNet;
use tracing::{info, warn};

use crate::pii::NumberHasher;

/// Settings of `tom serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where FreeSWITCH's `socket` application connects.
    #[arg(long, env = "TOM_ESL_LISTEN", default_value = "127.0.0.1:8084")]
    esl_listen: SocketAddr,
    /// FreeSWITCH hosts allowed to connect (CIDR, comma-separated).
    #[arg(
        long,
        env = "TOM_ESL_ALLOW",
        value_delimiter = ',',
        default_value = "127.0.0.0/8,::1/128"
    )]
    esl_allow: Vec<IpNet>,
    /// IP for the media sockets (ours and FreeSWITCH's side of the unicast stream).
    #[arg(long, env = "TOM_MEDIA_IP", default_value = "127.0.0.1")]
    media_ip: IpAddr,
    /// Hang up calls after this many seconds.
    #[arg(long, env = "TOM_MAX_CALL_SECS", default_value_t = 300)]
    max_call_secs: u64,
    /// Salt for hashing caller numbers before they reach logs.
    #[arg(
        long,
        env = "TOM_PII_SALT",
        default_value = "tom-dev-salt",
        hide_env_values = true
    )]
    pii_salt: String,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = OutboundConfig {
        listen: args.esl_listen,
        allow: args.esl_allow.clone(),
        ..OutboundConfig::default()
    };
    let server = OutboundServer::bind(config)
        .await
        .with_context(|| format!("cannot listen for FreeSWITCH on {}", args.esl_listen))?;
    info!(listen = %server.local_addr()?, "waiting for FreeSWITCH outbound connections");
    warn!("conversation backends are not built yet: calls are answered with an audio echo");
    let hasher = NumberHasher::new(args.pii_salt.clone());
    let mut calls = server.serve();
    loop {
        tokio::select! {
            call = calls.next() => {
                let Some(call) = call else { anyhow::bail!("the ESL listener stopped") };
                let hasher = hasher.clone();
                let (media_ip, max) = (args.media_ip, Duration::from_secs(args.max_call_secs));
                tokio::spawn(async move {
                    let uuid = call.channel().unique_id.clone();
                    if let Err(e) = echo_call(call, media_ip, max, &hasher).await {
                        warn!(%uuid, error = %e, "call ended with an error");
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => {
                info!("shutting down");
                return Ok(());
            }
        }
    }
}

async fn echo_call(
    mut call: Call,
    media_ip: IpAddr,
    max: Duration,
    hasher: &NumberHasher,
) -> anyhow::Result<()> {
    let ch = call.channel().clone();
    info!(
        uuid = %ch.unique_id,
        caller = %hasher.hash(&ch.caller_id_number),
        did = %ch.destination_number,
        codec = %ch.read_codec,
        rate = ch.read_rate,
        "call started"
    );
    let format = MediaFormat::l16(ch.read_rate)?;
    let fs_side = SocketAddr::new(media_ip, free_udp_port(media_ip)?);
    let mut unicast = UnicastConfig::new(format, fs_side);
    unicast.bind = SocketAddr::new(media_ip, 0);
    let leg = UnicastLeg::bind(unicast).await?;
    call.answer().await?;
    call.start_unicast(leg.params()).await?;
    let counters = leg.counters();
    let (mut rx, tx) = leg.split()?;
    let deadline = tokio::time::sleep(max);
    tokio::pin!(deadline);
    let outcome: anyhow::Result<()> = loop {
        tokio::select! {
            frame = rx.recv() => {
                let echoed = frame.map_err(anyhow::Error::from)
                    .and_then(|f| tx.push(f.bytes()).map_err(anyhow::Error::from));
                if let Err(e) = echoed {
                    break Err(e);
                }
            }
            event = call.next_event() => match event {
                Some(Incoming::Event(e)) if e.name() == Some("CHANNEL_HANGUP") => break Ok(()),
                Some(_) => {}
                None => break Ok(()),
            },
            () = &mut deadline => {
                info!(uuid = %ch.unique_id, "maximum call duration reached");
                break call.hangup("NORMAL_CLEARING").await.map_err(Into::into);
            }
        }
    };
    if outcome.is_err() {
        // Never leave the caller in silence: end the call we can no longer serve.
        let _ = call.hangup("NORMAL_TEMPORARY_FAILURE").await;
    }
    tx.flush();
    // Let the linger events arrive and the session close.
    while call.next_event().await.is_some() {}
    info!(uuid = %ch.unique_id, media = ?counters.snapshot(), "call ended");
    outcome
}
