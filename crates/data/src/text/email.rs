//! The text of an e-mail message: its subject and its body, decoded.

use mail_parser::MessageParser;

/// The subject line and the decoded body text of a raw RFC 5322 message, separated by a
/// newline. MIME structure, transfer encodings (base64, quoted-printable) and character sets are
/// decoded by the `mail-parser` crate; an HTML-only body becomes its text. Other headers are left
/// out. A message the parser cannot read gives the bytes after its first blank line, decoded as
/// UTF-8 with replacement characters.
///
/// ```
/// let raw = b"From: a@example.org\r\nSubject: Lunch\r\nContent-Type: text/plain\r\n\r\nAt noon?\r\n";
/// assert_eq!(bulwark_data::text::email_text(raw).trim_end(), "Lunch\nAt noon?");
/// ```
pub fn email_text(raw: &[u8]) -> String {
    let Some(message) = MessageParser::default().parse(raw) else {
        return fallback_body(raw);
    };
    let subject = message.subject().unwrap_or_default();
    let body = message.body_text(0).unwrap_or_default();
    format!("{subject}\n{body}")
}

/// The bytes after the header block (the first empty line), lossily decoded.
fn fallback_body(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let body = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .map_or("", |(_, body)| body);
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_transfer_encodings_and_html() {
        let qp = b"Subject: =?utf-8?q?Caf=C3=A9?=\r\nContent-Type: text/plain; charset=utf-8\r\n\
                   Content-Transfer-Encoding: quoted-printable\r\n\r\nna=C3=AFve\r\n";
        assert_eq!(email_text(qp).trim_end(), "Caf\u{e9}\nna\u{ef}ve");
        let b64 = b"Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n";
        assert_eq!(email_text(b64).trim_end(), "x\nhello world");
        let html = b"Subject: offer\r\nContent-Type: text/html\r\n\r\n<html><body><p>Buy <b>now</b></p></body></html>\r\n";
        let text = email_text(html);
        assert!(text.starts_with("offer\n"), "{text:?}");
        assert!(
            text.contains("Buy") && text.contains("now") && !text.contains('<'),
            "{text:?}"
        );
    }

    #[test]
    fn headers_other_than_the_subject_are_left_out() {
        let raw = b"From: someone@spamassassin.taint.org\r\nX-Mailer: Foo\r\n\r\nbody only\r\n";
        let text = email_text(raw);
        assert!(!text.contains("taint") && !text.contains("Foo"), "{text:?}");
        assert!(text.contains("body only"));
        assert_eq!(fallback_body(b"H: 1\n\nrest\n"), "rest\n");
        assert_eq!(fallback_body(b"no body"), "");
    }
}
