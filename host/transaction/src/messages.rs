//! Messages the transaction layer writes itself: responses to requests (100 Trying, 482) and
//! the hop-by-hop ACK of a non-2xx final response.

use sluice_sip::{HeaderName, Message, Method};

/// Build a response to `req`: Via, From, To, Call-ID and CSeq copied; To tag added when given
/// and absent (RFC 3261 §8.2.6).
pub fn response_to(req: &Message, status: u16, reason: &str, to_tag: Option<&str>) -> Message {
    let mut resp = Message::response(status, reason);
    for h in &req.headers {
        match h.name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                resp.headers.push(h.name.clone(), h.value.clone())
            }
            HeaderName::To => {
                let has_tag = sluice_sip::NameAddr::parse(&h.value)
                    .and_then(|n| n.param("tag"))
                    .is_some();
                match to_tag {
                    Some(tag) if !has_tag && status > 100 => resp
                        .headers
                        .push(HeaderName::To, format!("{};tag={tag}", h.value)),
                    _ => resp.headers.push(HeaderName::To, h.value.clone()),
                }
            }
            _ => {}
        }
    }
    resp
}

/// ACK for a non-2xx final response (RFC 3261 §17.1.1.3): same Request-URI, top Via, From,
/// Call-ID, CSeq number and Route; To from the response.
pub(crate) fn ack_for(request: &Message, response: &Message) -> Message {
    let uri = request.request_uri().unwrap_or("sip:invalid").to_string();
    let mut ack = Message::request(Method::Ack, uri);
    if let Some(v) = request.headers.values(&HeaderName::Via).next() {
        ack.headers.push(HeaderName::Via, v.to_string());
    }
    for name in [HeaderName::MaxForwards, HeaderName::From] {
        if let Some(v) = request.header(&name) {
            ack.headers.push(name, v.to_string());
        }
    }
    if let Some(v) = response.header(&HeaderName::To) {
        ack.headers.push(HeaderName::To, v.to_string());
    }
    if let Some(v) = request.call_id() {
        ack.headers.push(HeaderName::CallId, v.to_string());
    }
    if let Some((n, _)) = request.cseq() {
        ack.headers.push(HeaderName::CSeq, format!("{n} ACK"));
    }
    for r in request.headers.get_all(&HeaderName::Route) {
        ack.headers.push(HeaderName::Route, r.to_string());
    }
    ack
}
