//! Listing contacts and companies: Savio's paged `GET` endpoints as a stream of objects.
//!
//! Pages are followed through the `next` link exactly as Savio gives it (resolved against the page's URL when
//! relative); page URLs are never built here, since the paging scheme is undocumented. A link to another
//! origin is refused because the token would go with it, and a link back to a page already read ends the
//! stream with an error instead of looping.
//!
//! The total count is Savio's `count` from the first page: [`SavioClient::list_contacts_with_total`] fetches
//! that page before returning, so a progress bar can be sized before the first item is consumed, and the
//! stream then starts with that page's items (no request is repeated).
//!
//! Page requests are never retried here. A writer that wants to pace them itself can drive the paging with
//! [`SavioClient::list_page`], starting from [`SavioClient::contacts_url`].

use std::collections::{HashSet, VecDeque};

use futures::Stream;
use reqwest::Url;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde::de::DeserializeOwned;

use super::error::{ClientError, Endpoint, origin_of};
use super::{APPLICATION_JSON, PAGE_BODY_READ, SavioClient, read_capped};
use crate::model::{Page, SavioCompany, SavioContact};

/// Filters for a list request, sent as query parameters on the first page only (later pages are Savio's
/// `next` links, which carry them on).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// `search`: contacts by email or name, companies by name.
    pub search: Option<String>,
    /// `ordering`, passed through as given: a field name, `-` prefixed for descending (e.g. `-updated`).
    pub ordering: Option<String>,
    /// `page_size`: undocumented; servers that do not know it ignore it.
    pub page_size: Option<u32>,
}

/// A listing whose first page has been read: the total Savio reports and every item, in order.
pub struct Listing<S> {
    /// `count` from the first page, when Savio sent one.
    pub total: Option<u64>,
    pub items: S,
}

/// Where the paging stands: items of the current page not yet yielded, and what comes after them.
struct Cursor<T> {
    buffered: VecDeque<T>,
    next: Next,
    /// Pages already requested, to stop a server whose links go in a circle.
    seen: HashSet<String>,
}

impl SavioClient {
    /// The first page of `GET users/` for a query.
    pub fn contacts_url(&self, query: &ListQuery) -> Url {
        with_query(&self.inner.users.url, query)
    }

    /// The first page of `GET companies/` for a query.
    pub fn companies_url(&self, query: &ListQuery) -> Url {
        with_query(&self.inner.companies.url, query)
    }

    /// Every contact matching the query, page after page.
    pub fn list_contacts(
        &self,
        query: &ListQuery,
    ) -> impl Stream<Item = Result<SavioContact, ClientError>> + Send + '_ {
        self.items(Cursor::starting_at(self.contacts_url(query)))
    }

    /// Every company matching the query, page after page.
    pub fn list_companies(
        &self,
        query: &ListQuery,
    ) -> impl Stream<Item = Result<SavioCompany, ClientError>> + Send + '_ {
        self.items(Cursor::starting_at(self.companies_url(query)))
    }

    /// Reads the first page of contacts, then returns its `count` and a stream of every contact.
    pub async fn list_contacts_with_total(
        &self,
        query: &ListQuery,
    ) -> Result<Listing<impl Stream<Item = Result<SavioContact, ClientError>> + Send + '_>, ClientError> {
        self.with_total(self.contacts_url(query)).await
    }

    /// Reads the first page of companies, then returns its `count` and a stream of every company.
    pub async fn list_companies_with_total(
        &self,
        query: &ListQuery,
    ) -> Result<Listing<impl Stream<Item = Result<SavioCompany, ClientError>> + Send + '_>, ClientError> {
        self.with_total(self.companies_url(query)).await
    }

    /// Fetches one page. `url` is absolute (a `next` link) or relative to the base URL (`users/?page=2`);
    /// either way it must be on the configured origin. One attempt, no retry: classify a
    /// [`ClientError::Request`] with `idempotent = true`.
    pub async fn list_page<T: DeserializeOwned>(&self, url: &str) -> Result<Page<T>, ClientError> {
        Ok(self.list_page_from(url).await?.0)
    }

    /// [`SavioClient::list_page`], with the URL the page finally came from (after same-origin redirects):
    /// resolve the page's relative `next` link against it.
    pub async fn list_page_from<T: DeserializeOwned>(&self, url: &str) -> Result<(Page<T>, Url), ClientError> {
        let parsed = self.inner.base.join(url).map_err(|source| ClientError::InvalidPageUrl {
            endpoint: Endpoint::new("GET", &self.inner.base),
            link: shorten(url),
            source,
        })?;
        let endpoint = Endpoint::new("GET", &parsed);
        let parsed = self.on_base_origin(parsed, &endpoint)?;
        self.fetch_page(&parsed).await
    }

    async fn with_total<T>(
        &self,
        first: Url,
    ) -> Result<Listing<impl Stream<Item = Result<T, ClientError>> + Send + '_>, ClientError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let mut cursor = Cursor::starting_at(first);
        let total = cursor.advance(self).await?;
        Ok(Listing { total, items: self.items(cursor) })
    }

    fn items<T>(&self, cursor: Cursor<T>) -> impl Stream<Item = Result<T, ClientError>> + Send + '_
    where
        T: DeserializeOwned + Send + 'static,
    {
        futures::stream::try_unfold(cursor, move |mut cursor| async move {
            loop {
                if let Some(item) = cursor.buffered.pop_front() {
                    return Ok(Some((item, cursor)));
                }
                if let Next::End = cursor.next {
                    return Ok(None);
                }
                cursor.advance(self).await?;
            }
        })
    }

    /// One GET of a page already checked to be on the configured origin. Returns the page and the URL it
    /// finally came from (after same-origin redirects), against which a relative `next` resolves.
    async fn fetch_page<T: DeserializeOwned>(&self, url: &Url) -> Result<(Page<T>, Url), ClientError> {
        let endpoint = Endpoint::new("GET", url);
        let mut response = self
            .get_client()?
            .get(url.clone())
            .header(AUTHORIZATION, self.inner.auth.clone())
            .header(ACCEPT, APPLICATION_JSON)
            .send()
            .await
            .map_err(|source| self.transport_error(&endpoint, source))?;
        if !response.status().is_success() {
            return Err(self.read_status_error(&endpoint, response).await.into());
        }
        let mut body = Vec::new();
        match read_capped(&mut response, PAGE_BODY_READ, &mut body).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(ClientError::PageTooLarge { endpoint, limit: PAGE_BODY_READ });
            }
            Err(source) => return Err(self.transport_error(&endpoint, source).into()),
        }
        let page = serde_json::from_slice(&body)
            .map_err(|source| ClientError::Decode { endpoint: endpoint.clone(), source })?;
        Ok((page, response.url().clone()))
    }

    /// Refuses a URL on another origin than the base URL's: the token would be sent there. One exception:
    /// a plain `http://` link to the base's own host when the base is `https://` is read as the base's
    /// origin. A server behind a TLS proxy that does not tell it so (Django without its proxy setting) writes
    /// such links; following them as given would send the token in clear. Never the other way round.
    fn on_base_origin(&self, mut url: Url, endpoint: &Endpoint) -> Result<Url, ClientError> {
        let base = &self.inner.base;
        if url.scheme() == "http"
            && base.scheme() == "https"
            && url.host() == base.host()
            && url.port().is_none_or(|p| p == 80)
            && url.set_scheme("https").is_ok()
            && url.set_port(base.port()).is_ok()
        {
            tracing::debug!("{endpoint}: a next link on http:// read as https://");
        }
        if url.origin() == base.origin() {
            Ok(url)
        } else {
            Err(ClientError::ForeignPage {
                endpoint: endpoint.clone(),
                found: origin_of(&url),
                expected: origin_of(base),
            })
        }
    }
}

impl<T: DeserializeOwned> Cursor<T> {
    fn starting_at(first: Url) -> Cursor<T> {
        Cursor { buffered: VecDeque::new(), next: Next::Page(first), seen: HashSet::new() }
    }

    /// Fetches the next page into the buffer and moves `next` on; returns the page's `count`. A bad `next`
    /// link is kept as the error to report once this page's items have been yielded.
    async fn advance(&mut self, client: &SavioClient) -> Result<Option<u64>, ClientError> {
        let url = match std::mem::replace(&mut self.next, Next::End) {
            Next::End => return Ok(None),
            Next::Refused(err) => return Err(err),
            Next::Page(url) => url,
        };
        self.seen.insert(url.as_str().to_owned());
        let (page, answered_from) = client.fetch_page::<T>(&url).await?;
        self.buffered = page.results.into();
        self.next = match page.next.as_deref() {
            None | Some("") => Next::End,
            Some(link) => match self.follow(client, &url, &answered_from, link) {
                Ok(next) => Next::Page(next),
                Err(err) => Next::Refused(err),
            },
        };
        Ok(page.count)
    }

    /// Resolves and checks a `next` link found on the page at `url` (answered from `answered_from`).
    fn follow(&self, client: &SavioClient, url: &Url, answered_from: &Url, link: &str) -> Result<Url, ClientError> {
        let endpoint = Endpoint::new("GET", url);
        let next = answered_from.join(link).map_err(|source| ClientError::InvalidPageUrl {
            endpoint: endpoint.clone(),
            link: shorten(link),
            source,
        })?;
        let next = client.on_base_origin(next, &endpoint)?;
        if self.seen.contains(next.as_str()) {
            return Err(ClientError::PageLoop { endpoint });
        }
        Ok(next)
    }
}

/// What follows the buffered items.
enum Next {
    Page(Url),
    /// A `next` link that must not be followed, reported after the current page's items.
    Refused(ClientError),
    End,
}

fn with_query(endpoint: &Url, query: &ListQuery) -> Url {
    let mut url = endpoint.clone();
    {
        let mut pairs = url.query_pairs_mut();
        if let Some(search) = &query.search {
            pairs.append_pair("search", search);
        }
        if let Some(ordering) = &query.ordering {
            pairs.append_pair("ordering", ordering);
        }
        if let Some(size) = query.page_size {
            pairs.append_pair("page_size", &size.to_string());
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    url
}

/// A server-given string cut to 200 characters for a message.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_added_only_when_set() {
        let base = Url::parse("https://h.example/app/api/users/").unwrap();
        assert_eq!(with_query(&base, &ListQuery::default()).as_str(), "https://h.example/app/api/users/");
        let q = ListQuery { search: Some("a b&c".into()), ordering: Some("-updated".into()), page_size: Some(50) };
        assert_eq!(
            with_query(&base, &q).as_str(),
            "https://h.example/app/api/users/?search=a+b%26c&ordering=-updated&page_size=50"
        );
    }

    #[test]
    fn an_http_link_to_the_https_base_host_is_upgraded_and_no_other_origin_passes() {
        let mut config = super::super::ClientConfig::new(crate::client::ApiToken::new("t0k3n".into()).unwrap());
        config.base_url = "https://savio.example:8443/app/api/".into();
        let client = SavioClient::new(config).unwrap();
        let endpoint = Endpoint::new("GET", &client.inner.base);
        let check = |link: &str| client.on_base_origin(Url::parse(link).unwrap(), &endpoint).map(|u| u.to_string());
        // Django behind a TLS proxy that was not told so writes its own links as http on port 80.
        assert_eq!(
            check("http://savio.example/app/api/users/?page=2").unwrap(),
            "https://savio.example:8443/app/api/users/?page=2"
        );
        assert_eq!(
            check("https://savio.example:8443/app/api/users/?page=3").unwrap(),
            "https://savio.example:8443/app/api/users/?page=3"
        );
        for foreign in ["http://savio.example:8080/x", "http://other.example/x", "https://savio.example/x"] {
            assert!(matches!(check(foreign), Err(ClientError::ForeignPage { .. })), "{foreign}");
        }
    }

    #[test]
    fn long_links_are_shortened_for_messages() {
        assert_eq!(shorten("abc"), "abc");
        let long = "x".repeat(500);
        assert_eq!(shorten(&long).chars().count(), 201);
    }
}
