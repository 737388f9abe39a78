//! `--freeswitch`: a real call through FreeSWITCH. The probe logs in to FreeSWITCH's
//! inbound event socket, originates a call to the dialplan extension that hands calls
//! to the engine, parks the caller's leg and puts a unicast leg on it: what arrives from
//! FreeSWITCH is what the caller hears, and what the probe sends is what the caller says.
//!
//! Built from the recorded inbound traces (`esl-outbound/outbound_bargein.control.*`
//! put unicast on a parked caller leg exactly this way); **not yet run against a live
//! FreeSWITCH**.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use esl_bridge::command::{Command, Password, SendMsg};
use esl_bridge::connection::{EslError, Response};
use esl_bridge::inbound::{InboundClient, InboundConfig};
use esl_bridge::media::{
    free_udp_port, MediaError, MediaFormat, UnicastConfig, UnicastLeg, UnicastReceiver,
    UnicastSender,
};

use super::session::{converse, CallerRx, CallerTx, Heard, Measured, Timing};
use super::wav::{rms, Questions};
use super::RunError;

/// FreeSWITCH's inbound event socket and what to call.
#[derive(Debug, Clone)]
pub struct FreeSwitchTarget {
    /// `host:port` of `mod_event_socket` (8021).
    pub addr: String,
    /// Its password.
    pub password: Password,
    /// The dial string to call, e.g. `loopback/9999` (a dialplan extension whose
    /// `socket` application reaches the engine).
    pub extension: String,
    /// The address FreeSWITCH sends the caller's audio to (default: this host's address
    /// on the route to FreeSWITCH).
    pub media_ip: Option<IpAddr>,
    /// Login, and each of: originate answered, unicast started.
    pub connect_timeout: Duration,
    /// Until the originated call is answered.
    pub originate_timeout: Duration,
}

/// Checks a dial string for what would break out of the `originate` command line.
pub fn validate_extension(extension: &str) -> Result<(), String> {
    if extension.is_empty() {
        return Err("--extension is empty".into());
    }
    if let Some(c) = extension
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '{' | '}' | '&' | '\''))
    {
        return Err(format!("--extension {extension:?} must not contain {c:?}"));
    }
    Ok(())
}

/// The `originate` command: a fresh channel UUID (so the probe can address the caller
/// leg at once), the caller number, and `&park()` so the caller leg sits in the park loop,
/// where FreeSWITCH streams unicast (see the fixtures' README). Shaped like the recorded
/// `bgapi originate {origination_uuid=…,origination_caller_id_number=…,
/// origination_caller_id_name=…}sofia/caller/9999@… &park()`.
pub fn originate_args(uuid: &str, caller: &str, extension: &str) -> String {
    format!(
        "originate {{origination_uuid={uuid},origination_caller_id_number={caller},\
         origination_caller_id_name=realtime-probe}}{extension} &park()"
    )
}

/// `api uuid_getvar <uuid> read_rate`'s answer as a rate FreeSWITCH's L16 unicast can
/// carry (`_undef_`, `-ERR …` or nonsense give `None`).
pub fn parse_rate(answer: &str) -> Option<u32> {
    let rate: u32 = answer.trim().parse().ok()?;
    MediaFormat::l16(rate).ok().map(|_| rate)
}

impl From<EslError> for RunError {
    fn from(e: EslError) -> Self {
        match e {
            EslError::AuthRejected { reply } => RunError::EslAuth(reply),
            other => RunError::Esl(other.to_string()),
        }
    }
}

impl From<MediaError> for RunError {
    fn from(e: MediaError) -> Self {
        RunError::Media(e.to_string())
    }
}

struct LegTx {
    sender: UnicastSender,
}

impl CallerTx for LegTx {
    async fn send_frame(&mut self, frame: &[i16]) -> Result<(), RunError> {
        // One frame per 20 ms tick into an empty queue: the leg's pacer sends it at once,
        // so the tick's instant is the send instant.
        self.sender.push_samples(frame)?;
        Ok(())
    }
}

struct LegRx {
    receiver: UnicastReceiver,
}

impl CallerRx for LegRx {
    async fn next(&mut self) -> Result<Heard, RunError> {
        let frame = self.receiver.recv().await?;
        let samples: Vec<i16> = frame.samples().map(Iterator::collect).unwrap_or_default();
        Ok(Heard::Audio { rms: rms(&samples) })
    }
}

/// The local address of the route to `peer` (no packet is sent).
fn local_ip_towards(peer: SocketAddr) -> std::io::Result<IpAddr> {
    let bind: SocketAddr = if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = std::net::UdpSocket::bind(bind)?;
    socket.connect(peer)?;
    Ok(socket.local_addr()?.ip())
}

fn expect_ok(response: Response, what: &str) -> Result<(), RunError> {
    match response {
        Response::Reply(r) if r.is_ok() => Ok(()),
        other => Err(RunError::Esl(format!("{what}: {}", other.text()))),
    }
}

/// One call through FreeSWITCH.
pub(crate) async fn run(
    target: &FreeSwitchTarget,
    questions: &Questions,
    requested_rate: u32,
    caller: &str,
    timing: &Timing,
    reply_rms: f64,
) -> Result<Measured, RunError> {
    let mut config = InboundConfig::new(target.addr.clone(), target.password.clone());
    config.login_timeout = target.connect_timeout;
    let client = InboundClient::connect(config).await.map_err(|e| match e {
        EslError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            RunError::Refused {
                target: target.addr.clone(),
            }
        }
        other => other.into(),
    })?;
    let uuid = uuid::Uuid::new_v4().to_string();
    // The command carries the caller number: it is never logged.
    let job = client
        .bgapi(originate_args(&uuid, caller, &target.extension))
        .await?;
    let answer = tokio::time::timeout(target.originate_timeout, job.result())
        .await
        .map_err(|_| RunError::Timeout {
            what: "the originated call to be answered",
            ms: target.originate_timeout.as_millis() as u64,
        })??;
    if answer.is_err() || !answer.text().starts_with("+OK") {
        let _ = client.exit().await;
        return Err(RunError::Esl(format!(
            "originate failed: {}",
            answer.text()
        )));
    }
    let result = talk(
        &client,
        target,
        &uuid,
        questions,
        requested_rate,
        timing,
        reply_rms,
    )
    .await;
    // The call exists from here on: always end it.
    if let Err(e) = client.api(format!("uuid_kill {uuid}")).await {
        tracing::debug!(error = %e, "uuid_kill");
    }
    if tokio::time::timeout(Duration::from_secs(2), client.exit())
        .await
        .is_err()
    {
        tracing::debug!("FreeSWITCH did not close the event socket after exit");
    }
    let mut measured = result?;
    measured.call_id = Some(uuid);
    Ok(measured)
}

async fn talk(
    client: &InboundClient,
    target: &FreeSwitchTarget,
    uuid: &str,
    questions: &Questions,
    requested_rate: u32,
    timing: &Timing,
    reply_rms: f64,
) -> Result<Measured, RunError> {
    // Unicast L16 runs at the channel's codec rate (8 kHz for PCMU, 16 kHz for G722, …).
    let rate_answer = client.api(format!("uuid_getvar {uuid} read_rate")).await?;
    let rate = parse_rate(rate_answer.text()).unwrap_or_else(|| {
        tracing::debug!(answer = rate_answer.text(), "no read_rate; using --rate");
        requested_rate
    });
    let question = questions.at(rate)?;
    let format = MediaFormat::l16(rate)?;
    let fs_ip = tokio::net::lookup_host(&target.addr)
        .await
        .map_err(|e| RunError::Connect {
            target: target.addr.clone(),
            reason: e.to_string(),
        })?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| RunError::Connect {
            target: target.addr.clone(),
            reason: "no address".into(),
        })?;
    let our_ip = match target.media_ip {
        Some(ip) => ip,
        None => local_ip_towards(SocketAddr::new(fs_ip, 9))?,
    };
    // FreeSWITCH binds its side itself. On this host a free port is known; for a remote
    // FreeSWITCH pick one at random from a high range (a clash shows as no audio).
    let fs_port = free_udp_port(fs_ip).unwrap_or_else(|_| rand::random_range(20_000..30_000));
    let mut config = UnicastConfig::new(format, SocketAddr::new(fs_ip, fs_port));
    config.bind = SocketAddr::new(our_ip, 0);
    let leg = UnicastLeg::bind(config).await?;
    let unicast = Command::SendMsg {
        uuid: Some(uuid.to_owned()),
        msg: SendMsg::Unicast(leg.params()),
    };
    expect_ok(client.send(unicast).await?, "unicast")?;
    let (receiver, sender) = leg.split()?;
    let mut tx = LegTx { sender };
    let mut rx = LegRx { receiver };
    converse(&mut tx, &mut rx, &question, timing, reply_rms).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_originate_command_matches_the_recorded_shape() {
        assert_eq!(
            originate_args("6f1c…", "+15550100", "loopback/9999"),
            "originate {origination_uuid=6f1c…,origination_caller_id_number=+15550100,\
             origination_caller_id_name=realtime-probe}loopback/9999 &park()"
        );
        // The bytes on the wire, through esl-bridge's encoder.
        let mut out = bytes::BytesMut::new();
        Command::BgApi {
            command: originate_args("u", "+1", "sofia/internal/100@127.0.0.1:5060"),
            job_uuid: None,
        }
        .encode(&mut out)
        .unwrap();
        assert_eq!(
            &out[..],
            b"bgapi originate {origination_uuid=u,origination_caller_id_number=+1,\
origination_caller_id_name=realtime-probe}sofia/internal/100@127.0.0.1:5060 &park()\n\n"
        );
    }

    #[test]
    fn extensions_cannot_break_the_command_line() {
        assert!(validate_extension("loopback/100").is_ok());
        assert!(validate_extension("sofia/internal/100@127.0.0.1:5060").is_ok());
        for bad in [
            "",
            "loopback/100 &echo()",
            "a\nb",
            "x}y",
            "{a=b}loopback/1",
            "a'b",
        ] {
            assert!(validate_extension(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn read_rate_answers() {
        assert_eq!(parse_rate("8000"), Some(8_000));
        assert_eq!(parse_rate("16000\n"), Some(16_000));
        assert_eq!(parse_rate("48000"), Some(48_000));
        assert_eq!(parse_rate("_undef_"), None);
        assert_eq!(parse_rate("-ERR No such channel!"), None);
        assert_eq!(parse_rate("44100"), Some(44_100));
        assert_eq!(parse_rate("11025"), None, "not whole samples per 20 ms");
    }

    #[test]
    fn the_unicast_sendmsg_names_both_ends() {
        let params = esl_bridge::UnicastParams {
            local_ip: [127, 0, 0, 1].into(),
            local_port: 9010,
            remote_ip: [127, 0, 0, 1].into(),
            remote_port: 9011,
            native: false,
        };
        let mut out = bytes::BytesMut::new();
        Command::SendMsg {
            uuid: Some("b468a669-a97d-4297-98ba-b8b43466bd43".into()),
            msg: SendMsg::Unicast(params),
        }
        .encode(&mut out)
        .unwrap();
        // Byte for byte what the recorded control connection sent
        // (esl-outbound/outbound_bargein.control.client_to_fs.raw).
        assert_eq!(
            &out[..],
            b"sendmsg b468a669-a97d-4297-98ba-b8b43466bd43\ncall-command: unicast\n\
local-ip: 127.0.0.1\nlocal-port: 9010\nremote-ip: 127.0.0.1\nremote-port: 9011\n\
transport: udp\n\n"
        );
    }

    #[test]
    fn the_route_to_loopback_is_loopback() {
        let ip = local_ip_towards(SocketAddr::from(([127, 0, 0, 1], 8021)));
        assert!(ip.is_ok_and(|ip| ip.is_loopback()));
    }
}
