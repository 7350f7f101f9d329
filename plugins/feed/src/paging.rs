//! Walking a paginated upstream: the URL of each page and when the walk
//! ends, for the common shapes, chosen by the plugin's settings.
//!
//! | `pagination` | asks for | ends when |
//! |---|---|---|
//! | `none` (default) | the URL as configured | after one answer |
//! | `page` | `?page=N&limit=S`, N from `first-page` | a page holds fewer than S records |
//! | `offset` | `?offset=K&limit=S` | a page holds fewer than S records |
//! | `cursor` | `?cursor=C` from the answer's `cursor-field` | the answer has no cursor |
//! | `link` | the `Link: <url>; rel="next"` of each answer | an answer has no next link |
//!
//! The parameter names are settings too (`page-param`, `offset-param`,
//! `limit-param`, `cursor-param`); `page-size` (S) defaults to 500 and is
//! sent with `cursor` and `link` only when set. A walk longer than
//! `max-pages` pages, or whose next page is the page itself, is an error:
//! an upstream that ignores the page parameter would otherwise be walked
//! for ever.

use crate::listing::{PageInfo, Shape};

/// Records asked for per page unless `page-size` says otherwise.
pub const DEFAULT_PAGE_SIZE: u64 = 500;
/// Pages one walk may take unless `max-pages` says otherwise.
pub const DEFAULT_MAX_PAGES: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Style {
    None,
    Page { param: String, next: u64 },
    Offset { param: String, next: u64 },
    Cursor { param: String },
    Link,
}

/// The pages of one walk.
#[derive(Debug, Clone)]
pub struct Pager {
    style: Style,
    /// The configured URL, to which each page's parameters are added.
    base: String,
    /// `(limit-param, page-size)` when the page size is sent.
    size: Option<(String, u64)>,
    shape: Shape,
    pages: u64,
    max_pages: u64,
}

impl Pager {
    /// A walk of `base` as the settings (`setting(key)`) describe it.
    pub fn new(base: &str, setting: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let text = |key: &str, default: &str| setting(key).unwrap_or_else(|| default.to_owned());
        let number = |key: &str, default: u64| match setting(key) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!(
                    "setting {key}={v:?} is not a positive whole number"
                )),
            },
        };
        let size = number("page-size", DEFAULT_PAGE_SIZE)?;
        let limit_param = text("limit-param", "limit");
        let sized = Some((limit_param.clone(), size));
        let asked_size = setting("page-size").map(|_| (limit_param, size));
        let pagination = text("pagination", "none");
        let (style, size) = match pagination.as_str() {
            "none" => (Style::None, None),
            "page" => (
                Style::Page {
                    param: text("page-param", "page"),
                    next: match setting("first-page") {
                        None => 1,
                        Some(v) => v.trim().parse().map_err(|_| {
                            format!("setting first-page={v:?} is not a whole number")
                        })?,
                    },
                },
                sized,
            ),
            "offset" => (
                Style::Offset {
                    param: text("offset-param", "offset"),
                    next: 0,
                },
                sized,
            ),
            "cursor" => (
                Style::Cursor {
                    param: text("cursor-param", "cursor"),
                },
                asked_size,
            ),
            "link" => (Style::Link, asked_size),
            other => {
                return Err(format!(
                    "setting pagination={other:?} is not one of none, page, offset, cursor, link"
                ));
            }
        };
        let cursor_field =
            matches!(style, Style::Cursor { .. }).then(|| text("cursor-field", "next"));
        Ok(Self {
            style,
            base: base.to_owned(),
            size,
            shape: Shape {
                items_field: setting("items-field"),
                cursor_field,
            },
            pages: 0,
            max_pages: number("max-pages", DEFAULT_MAX_PAGES)?,
        })
    }

    /// Where the records and the cursor are in an answer.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The first page's URL.
    pub fn first(&mut self) -> Result<String, String> {
        self.pages = 1;
        let params = match &self.style {
            Style::None | Style::Cursor { .. } | Style::Link => Vec::new(),
            Style::Page { param, next } | Style::Offset { param, next } => {
                vec![(param.clone(), next.to_string())]
            }
        };
        Ok(self.url(params))
    }

    /// The URL of the page after `current`, which held `page` and answered
    /// with `link` as its `Link` header; `None` when the walk is over.
    pub fn next(
        &mut self,
        current: &str,
        page: &PageInfo,
        link: Option<&str>,
    ) -> Result<Option<String>, String> {
        let full = self
            .size
            .as_ref()
            .is_none_or(|(_, size)| page.records as u64 >= *size);
        let param = match &mut self.style {
            Style::None => None,
            Style::Page { param, next } if page.records > 0 && full => {
                *next += 1;
                Some((param.clone(), next.to_string()))
            }
            Style::Offset { param, next } if page.records > 0 && full => {
                *next += page.records as u64;
                Some((param.clone(), next.to_string()))
            }
            Style::Page { .. } | Style::Offset { .. } => None,
            Style::Cursor { param } => page.cursor.clone().map(|c| (param.clone(), c)),
            Style::Link => {
                let next = link.and_then(next_link).map(|l| resolve(current, &l));
                return self.go(current, next);
            }
        };
        let url = param.map(|p| self.url(vec![p]));
        self.go(current, url)
    }

    fn go(&mut self, current: &str, next: Option<String>) -> Result<Option<String>, String> {
        let Some(next) = next else {
            return Ok(None);
        };
        if next == current {
            return Err(format!(
                "the upstream's next page is the page itself ({current}): check the pagination settings"
            ));
        }
        self.pages += 1;
        if self.pages > self.max_pages {
            return Err(format!(
                "the listing goes on past {} pages (setting max-pages): stopped",
                self.max_pages
            ));
        }
        Ok(Some(next))
    }

    fn url(&self, mut params: Vec<(String, String)>) -> String {
        params.extend(self.size.iter().map(|(p, s)| (p.clone(), s.to_string())));
        let mut url = self.base.clone();
        for (i, (key, value)) in params.iter().enumerate() {
            let sep = if i == 0 && !self.base.contains('?') {
                '?'
            } else {
                '&'
            };
            url.push(sep);
            url.push_str(&encode(key));
            url.push('=');
            url.push_str(&encode(value));
        }
        url
    }
}

/// Percent-encodes a query component (everything but unreserved characters).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `rel="next"` target of a `Link` header (RFC 8288).
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let after = &rest[close + 1..];
        let params_end = after.find('<').unwrap_or(after.len());
        // The parameters up to the comma before the next link.
        let params = after[..params_end].trim_end().trim_end_matches(',');
        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.trim().to_owned());
        }
        rest = &after[params_end..];
    }
    None
}

/// `target` (absolute, `/path`, `?query` or relative) resolved against the
/// absolute URL `base`.
fn resolve(base: &str, target: &str) -> String {
    if target.starts_with("http://") || target.starts_with("https://") {
        return target.to_owned();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let origin_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let path_end = base.find('?').unwrap_or(base.len());
    if let Some(rest) = target.strip_prefix("//") {
        format!("{}{rest}", &base[..scheme_end])
    } else if target.starts_with('/') {
        format!("{}{target}", &base[..origin_end])
    } else if target.starts_with('?') {
        format!("{}{target}", &base[..path_end])
    } else {
        let dir_end = base[..path_end].rfind('/').filter(|i| *i >= origin_end);
        match dir_end {
            Some(i) => format!("{}/{target}", &base[..i]),
            None => format!("{}/{target}", &base[..origin_end]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn pager(base: &str, settings: &[(&str, &str)]) -> Pager {
        let map: HashMap<String, String> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Pager::new(base, |k| map.get(k).cloned()).unwrap()
    }

    fn page(records: usize, cursor: Option<&str>) -> PageInfo {
        PageInfo {
            records,
            cursor: cursor.map(str::to_owned),
        }
    }

    #[test]
    fn no_pagination_is_one_answer() {
        let mut p = pager("http://crm:8001/customers", &[]);
        let first = p.first().unwrap();
        assert_eq!(first, "http://crm:8001/customers");
        assert_eq!(p.next(&first, &page(10_000, None), None).unwrap(), None);
    }

    #[test]
    fn page_numbers_until_a_short_page() {
        let mut p = pager(
            "http://crm/customers?active=true",
            &[
                ("pagination", "page"),
                ("page-size", "2"),
                ("first-page", "0"),
            ],
        );
        let first = p.first().unwrap();
        assert_eq!(first, "http://crm/customers?active=true&page=0&limit=2");
        let second = p.next(&first, &page(2, None), None).unwrap().unwrap();
        assert_eq!(second, "http://crm/customers?active=true&page=1&limit=2");
        assert_eq!(p.next(&second, &page(1, None), None).unwrap(), None);
    }

    #[test]
    fn offsets_advance_by_what_came() {
        let mut p = pager(
            "http://inv/products",
            &[
                ("pagination", "offset"),
                ("page-size", "3"),
                ("limit-param", "per_page"),
            ],
        );
        let first = p.first().unwrap();
        assert_eq!(first, "http://inv/products?offset=0&per_page=3");
        let second = p.next(&first, &page(3, None), None).unwrap().unwrap();
        assert_eq!(second, "http://inv/products?offset=3&per_page=3");
        assert_eq!(p.next(&second, &page(0, None), None).unwrap(), None);
    }

    #[test]
    fn cursors_are_encoded_and_end_the_walk_when_absent() {
        let mut p = pager("http://crm/customers", &[("pagination", "cursor")]);
        assert_eq!(p.shape().cursor_field.as_deref(), Some("next"));
        let first = p.first().unwrap();
        assert_eq!(first, "http://crm/customers");
        let second = p
            .next(&first, &page(7, Some("a+b/c=")), None)
            .unwrap()
            .unwrap();
        assert_eq!(second, "http://crm/customers?cursor=a%2Bb%2Fc%3D");
        assert_eq!(p.next(&second, &page(7, None), None).unwrap(), None);
    }

    #[test]
    fn link_headers_are_followed_and_resolved() {
        let mut p = pager("http://crm:8001/api/customers", &[("pagination", "link")]);
        let first = p.first().unwrap();
        let header = r#"<http://crm:8001/api/customers?page=9>; rel="last", </api/customers?page=2>; rel="next""#;
        assert_eq!(
            p.next(&first, &page(1, None), Some(header))
                .unwrap()
                .as_deref(),
            Some("http://crm:8001/api/customers?page=2")
        );
        assert_eq!(
            p.next(&first, &page(1, None), Some(r#"<x>; rel="prev""#))
                .unwrap(),
            None
        );
        assert_eq!(p.next(&first, &page(1, None), None).unwrap(), None);
        assert_eq!(resolve("http://h/a/b?x=1", "?y=2"), "http://h/a/b?y=2");
        assert_eq!(resolve("http://h/a/b?x=1", "c"), "http://h/a/c");
        assert_eq!(resolve("https://h/a", "//g/x"), "https://g/x");
        assert_eq!(next_link("<u>; rel=\"next last\"").as_deref(), Some("u"));
        assert_eq!(next_link("<u>; REL=next").as_deref(), Some("u"));
        assert_eq!(
            next_link(r#"</a?page=2>; rel="next", </a?page=1>; rel="first""#).as_deref(),
            Some("/a?page=2")
        );
        assert_eq!(
            next_link("<a,b>; rel=next ,<c>; rel=last").as_deref(),
            Some("a,b")
        );
    }

    #[test]
    fn a_walk_that_does_not_move_or_never_ends_is_an_error() {
        let mut p = pager(
            "http://crm/c",
            &[("pagination", "cursor"), ("max-pages", "3")],
        );
        let first = p.first().unwrap();
        let mut url = first.clone();
        for n in 0..2 {
            url = p
                .next(&url, &page(1, Some(&n.to_string())), None)
                .unwrap()
                .unwrap();
        }
        let err = p.next(&url, &page(1, Some("9")), None).unwrap_err();
        assert!(err.contains("max-pages"), "{err}");
        let mut p = pager("http://crm/c", &[("pagination", "link")]);
        let first = p.first().unwrap();
        let err = p
            .next(&first, &page(1, None), Some("<http://crm/c>; rel=next"))
            .unwrap_err();
        assert!(err.contains("the page itself"), "{err}");
    }

    #[test]
    fn bad_settings_are_named() {
        for (key, value) in [
            ("pagination", "pages"),
            ("page-size", "0"),
            ("page-size", "many"),
            ("max-pages", "-1"),
        ] {
            let err =
                Pager::new("http://x/", |k| (k == key).then(|| value.to_owned())).unwrap_err();
            assert!(err.contains(key), "{err}");
        }
    }
}
