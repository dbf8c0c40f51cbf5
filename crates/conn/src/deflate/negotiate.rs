//! RFC 7692 section 7.1: the offer, the server's choice and the client's check.

use super::{DeflateConfig, DeflateError, DeflateParams, EXTENSION_NAME, MAX_WINDOW_BITS};
use crate::handshake::ExtensionOffer;

/// One offer's or response's parameters, each checked for syntax and given at most once.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: given without a value (legal in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

fn parse_params(params: &[(String, Option<String>)]) -> Result<Parsed, DeflateError> {
    let mut p = Parsed::default();
    let mut seen = [false; 4];
    for (name, value) in params {
        let (i, param) = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" => (0, "server_no_context_takeover"),
            "client_no_context_takeover" => (1, "client_no_context_takeover"),
            "server_max_window_bits" => (2, "server_max_window_bits"),
            "client_max_window_bits" => (3, "client_max_window_bits"),
            _ => return Err(DeflateError::UnknownParam(name.clone())),
        };
        if std::mem::replace(&mut seen[i], true) {
            return Err(DeflateError::DuplicateParam(param.to_owned()));
        }
        let value = value.as_deref().map(|v| v.trim().trim_matches('"'));
        match (i, value) {
            (0 | 1, Some(v)) => return Err(DeflateError::UnexpectedValue { param, value: v.to_owned() }),
            (0, None) => p.server_no_context_takeover = true,
            (1, None) => p.client_no_context_takeover = true,
            (2, None) => return Err(DeflateError::MissingValue(param)),
            (2, Some(v)) => p.server_max_window_bits = Some(window_bits(param, v)?),
            (_, v) => p.client_max_window_bits = Some(v.map(|v| window_bits(param, v)).transpose()?),
        }
    }
    Ok(p)
}

/// RFC 7692 7.1.2.1: a decimal integer 8..=15, no leading zero.
fn window_bits(param: &'static str, v: &str) -> Result<u8, DeflateError> {
    let bad = || DeflateError::InvalidWindowBits { param, value: v.to_owned() };
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u8 = v.parse().map_err(|_| bad())?;
    if (8..=MAX_WINDOW_BITS).contains(&n) { Ok(n) } else { Err(bad()) }
}

/// The server's answer to one offer, and whether the offer named `server_max_window_bits`
/// (then the response must state it, even at 15).
fn accept_offer(offer: &ExtensionOffer, cfg: &DeflateConfig) -> Result<(DeflateParams, bool), DeflateError> {
    let p = parse_params(&offer.params)?;
    if p.server_max_window_bits == Some(8) {
        return Err(DeflateError::ServerWindowEight);
    }
    let params = DeflateParams {
        server_no_context_takeover: p.server_no_context_takeover || cfg.server_no_context_takeover,
        client_no_context_takeover: p.client_no_context_takeover || cfg.client_no_context_takeover,
        server_max_window_bits: p.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS).min(cfg.server_max_window_bits),
        // Without the parameter in the offer the response must not limit the client (7.1.2.2).
        client_max_window_bits: match p.client_max_window_bits {
            Some(offered) => offered.unwrap_or(MAX_WINDOW_BITS).min(cfg.client_max_window_bits),
            None => MAX_WINDOW_BITS,
        },
    };
    Ok((params, p.server_max_window_bits.is_some()))
}

/// Server: the parameters for the first acceptable permessage-deflate offer among
/// `offers` (the request's extensions, in order), with `cfg` applied; `None` if none
/// is acceptable. An offer with an unknown or repeated parameter or a bad value is
/// declined (RFC 7692 7.1), and so is one asking for `server_max_window_bits=8`.
///
/// `cfg` is trusted to be [valid](DeflateConfig::validate).
///
/// ```
/// use ringwire_conn::deflate::{DeflateConfig, negotiate};
/// use ringwire_conn::handshake::ExtensionOffer;
///
/// let offer = |params: &[(&str, Option<&str>)]| ExtensionOffer {
///     name: "permessage-deflate".into(),
///     params: params.iter().map(|(k, v)| (k.to_string(), v.map(String::from))).collect(),
/// };
/// let offers = [offer(&[("server_max_window_bits", Some("8"))]), offer(&[("client_max_window_bits", None)])];
/// let params = negotiate(&offers, &DeflateConfig::default()).expect("the second is acceptable");
/// assert_eq!(params.response_header(), "permessage-deflate");
/// ```
pub fn negotiate(offers: &[ExtensionOffer], cfg: &DeflateConfig) -> Option<DeflateParams> {
    negotiate_response(offers, cfg).map(|(params, _)| params)
}

/// [`negotiate`], with the exact `Sec-WebSocket-Extensions` value to answer with: the
/// same as [`DeflateParams::response_header`], except that `server_max_window_bits=15`
/// is echoed when the chosen offer named it (RFC 7692 7.1.2.1: the server accepts the
/// parameter by stating it).
pub fn negotiate_response(offers: &[ExtensionOffer], cfg: &DeflateConfig) -> Option<(DeflateParams, String)> {
    offers
        .iter()
        .filter(|o| o.name.eq_ignore_ascii_case(EXTENSION_NAME))
        .find_map(|o| accept_offer(o, cfg).ok())
        .map(|(params, state_window)| (params, params.header(state_window)))
}

/// Client: the `Sec-WebSocket-Extensions` value offering `cfg`. It always names
/// `client_max_window_bits` (so the server may limit our window and save its memory),
/// with our most when below 15; `server_max_window_bits` only when below 15. Window
/// bits in `cfg` are 9..=15, so it never asks for 8.
///
/// ```
/// use ringwire_conn::deflate::{DeflateConfig, client_offer};
/// let mut cfg = DeflateConfig::default();
/// cfg.server_no_context_takeover = true;
/// cfg.server_max_window_bits = 10;
/// assert_eq!(
///     client_offer(&cfg),
///     "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits"
/// );
/// ```
pub fn client_offer(cfg: &DeflateConfig) -> String {
    let mut s = String::from(EXTENSION_NAME);
    if cfg.server_no_context_takeover {
        s.push_str("; server_no_context_takeover");
    }
    if cfg.client_no_context_takeover {
        s.push_str("; client_no_context_takeover");
    }
    if cfg.server_max_window_bits < MAX_WINDOW_BITS {
        s.push_str(&format!("; server_max_window_bits={}", cfg.server_max_window_bits));
    }
    s.push_str("; client_max_window_bits");
    if cfg.client_max_window_bits < MAX_WINDOW_BITS {
        s.push_str(&format!("={}", cfg.client_max_window_bits));
    }
    s
}

/// Client: checks the server's `Sec-WebSocket-Extensions` `value` against the offer
/// [`client_offer`] made for `cfg`, and gives the agreed parameters. Errors: no or
/// several extensions, another extension, a bad parameter, a server window larger than
/// asked or not confirmed, `server_no_context_takeover` asked and not confirmed,
/// `client_max_window_bits=8` (zlib cannot), or `client_max_window_bits` without a value.
///
/// ```
/// use ringwire_conn::deflate::{DeflateConfig, DeflateError, accept_response};
/// let mut cfg = DeflateConfig::default();
/// cfg.server_max_window_bits = 10;
/// let p = accept_response("permessage-deflate; server_max_window_bits=9; client_max_window_bits=12", &cfg)?;
/// assert_eq!((p.server_max_window_bits, p.client_max_window_bits), (9, 12));
/// assert_eq!(
///     accept_response("permessage-deflate", &cfg),
///     Err(DeflateError::ServerWindowNotConfirmed { asked: 10 })
/// );
/// # Ok::<(), DeflateError>(())
/// ```
pub fn accept_response(value: &str, cfg: &DeflateConfig) -> Result<DeflateParams, DeflateError> {
    let mut items = value.split(',').map(str::trim).filter(|s| !s.is_empty());
    let item = items.next().ok_or(DeflateError::NoExtension)?;
    if items.next().is_some() {
        return Err(DeflateError::SeveralExtensions(value.trim().to_owned()));
    }
    let offer = crate::handshake::parse_extension(item)
        .filter(|o| o.name == EXTENSION_NAME)
        .ok_or_else(|| DeflateError::NotOffered(item.split(';').next().unwrap_or_default().trim().to_owned()))?;
    let p = parse_params(&offer.params)?;
    let client_max_window_bits = match p.client_max_window_bits {
        None => cfg.client_max_window_bits,
        Some(None) => return Err(DeflateError::MissingValue("client_max_window_bits")),
        Some(Some(8)) => return Err(DeflateError::ClientWindowEight),
        Some(Some(n)) => n.min(cfg.client_max_window_bits),
    };
    let asked = cfg.server_max_window_bits;
    let server_max_window_bits = match p.server_max_window_bits {
        Some(got) if got > asked => return Err(DeflateError::ServerWindowTooLarge { asked, got }),
        Some(got) => got,
        None if asked < MAX_WINDOW_BITS => return Err(DeflateError::ServerWindowNotConfirmed { asked }),
        None => MAX_WINDOW_BITS,
    };
    if cfg.server_no_context_takeover && !p.server_no_context_takeover {
        return Err(DeflateError::ServerContextTakeoverNotConfirmed);
    }
    Ok(DeflateParams {
        server_no_context_takeover: p.server_no_context_takeover,
        client_no_context_takeover: p.client_no_context_takeover || cfg.client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
    })
}
