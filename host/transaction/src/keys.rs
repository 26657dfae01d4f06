//! How a message finds its transaction: the keys of server and client transactions and of
//! merged requests.

use sluice_sip::{HeaderName, Message, Method, BRANCH_COOKIE};

/// Server transaction key (RFC 3261 §17.2.3): branch, sent-by and method, with ACK matching
/// INVITE. Requests without the magic cookie fall back to RFC 2543-style matching.
pub(crate) fn server_key(msg: &Message, method: &Method) -> String {
    let method = if *method == Method::Ack {
        "INVITE"
    } else {
        method.as_str()
    };
    let via = msg.top_via();
    let branch = via.as_ref().and_then(|v| v.branch()).unwrap_or("");
    if branch.starts_with(BRANCH_COOKIE) {
        let (host, port) = via
            .as_ref()
            .map(|v| (v.host, v.port.unwrap_or(5060)))
            .unwrap_or(("", 0));
        format!("{branch}\x1f{host}:{port}\x1f{method}")
    } else {
        // RFC 2543: Request-URI, To tag, From tag, Call-ID, CSeq number and top Via.
        let cseq = msg.cseq().map(|(n, _)| n).unwrap_or(0);
        let top = msg.headers.values(&HeaderName::Via).next().unwrap_or("");
        format!(
            "2543\x1f{}\x1f{}\x1f{}\x1f{cseq}\x1f{top}\x1f{method}",
            msg.from_tag().unwrap_or(""),
            msg.call_id().unwrap_or(""),
            msg.request_uri()
                .filter(|_| !matches!(msg.method(), Some(Method::Ack)))
                .unwrap_or(""),
        )
    }
}

/// Client transaction key (RFC 3261 §17.1.3): the branch and the method, with ACK matching
/// INVITE.
pub(crate) fn client_key(branch: &str, method: &Method) -> String {
    let method = if *method == Method::Ack {
        "INVITE"
    } else {
        method.as_str()
    };
    format!("{branch}\x1f{method}")
}

/// What makes a request merged (RFC 3261 §8.2.2.2): same From tag, Call-ID and CSeq as a
/// running transaction.
pub(crate) fn merge_key(msg: &Message) -> Option<String> {
    let (n, m) = msg.cseq()?;
    Some(format!(
        "{}\x1f{}\x1f{n}\x1f{m}",
        msg.from_tag()?,
        msg.call_id()?
    ))
}
