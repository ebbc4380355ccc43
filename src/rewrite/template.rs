//! Header value templates: `{ns}` is the namespace root, `{tenant}` the raw tenant id,
//! which a header can carry only when it is visible ASCII.

use http::HeaderValue;

use super::Target;
use crate::refusal::Refusal;

#[derive(Debug, Clone)]
pub enum Piece {
    Text(String),
    Ns,
    Tenant,
}

#[derive(Debug, Clone)]
pub enum ValueTemplate {
    Fixed(HeaderValue),
    Pieces(Vec<Piece>),
}

impl ValueTemplate {
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.contains("{ns}") && !text.contains("{tenant}") {
            return HeaderValue::from_str(text)
                .map(Self::Fixed)
                .map_err(|_| "not a valid header value (visible ASCII only)".to_owned());
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let next = [("{ns}", Piece::Ns), ("{tenant}", Piece::Tenant)]
                .into_iter()
                .filter_map(|(token, piece)| rest.find(token).map(|at| (at, token, piece)))
                .min_by_key(|(at, _, _)| *at);
            let Some((at, token, piece)) = next else {
                pieces.push(Piece::Text(rest.to_owned()));
                break;
            };
            if at > 0 {
                pieces.push(Piece::Text(rest[..at].to_owned()));
            }
            pieces.push(piece);
            rest = &rest[at + token.len()..];
        }
        let literal: String = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        HeaderValue::from_str(&literal)
            .map_err(|_| "not a valid header value (visible ASCII only)".to_owned())?;
        Ok(Self::Pieces(pieces))
    }

    pub fn is_templated(&self) -> bool {
        matches!(self, Self::Pieces(_))
    }

    pub fn render(&self, target: Option<&Target>) -> Result<HeaderValue, Refusal> {
        let pieces = match self {
            Self::Fixed(value) => return Ok(value.clone()),
            Self::Pieces(pieces) => pieces,
        };
        let target = target.ok_or_else(|| {
            Refusal::BadRequest("this header template needs a namespace".to_owned())
        })?;
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Ns => out.push_str(target.root),
                Piece::Tenant => {
                    let tenant = target.tenant.unwrap_or(target.root);
                    if !tenant.bytes().all(|b| b.is_ascii_graphic()) {
                        return Err(Refusal::BadRequest(
                            "this route forwards the tenant id in a header, which only works for visible-ASCII ids".to_owned(),
                        ));
                    }
                    out.push_str(tenant);
                }
            }
        }
        HeaderValue::from_str(&out)
            .map_err(|_| Refusal::BadRequest("a templated header is not a valid value".to_owned()))
    }
}
