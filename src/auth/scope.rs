//! Scopes: what a verified token may do, and on which topics or groups.

use std::fmt;

use super::AuthError;

/// What a request wants to do; the resource it names is a topic or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Append records to a topic.
    Publish,
    /// Read a topic: fetch, WebSocket, SSE, group poll.
    Subscribe,
    /// Join, commit, seek and inspect a consumer group.
    Group,
    /// Create, change and delete topics and groups; see everything.
    Admin,
}

impl Action {
    /// The action's name as written in scopes (`publish`, `subscribe`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
            Self::Group => "group",
            Self::Admin => "admin",
        }
    }
}

/// Which names a scope covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Pattern {
    /// Exactly this name.
    Exact(String),
    /// Every name starting with this (written `prefix*`).
    Prefix(String),
    /// Every name (written `*`).
    Any,
}

impl Pattern {
    fn parse(text: &str) -> Result<Self, &'static str> {
        match text.split_once('*') {
            None if text.is_empty() => Err("empty name pattern"),
            None => Ok(Self::Exact(text.to_owned())),
            Some(("", "")) => Ok(Self::Any),
            Some((prefix, "")) => Ok(Self::Prefix(prefix.to_owned())),
            // Names cannot contain `*`, so a pattern like `a*b` could never mean anything;
            // refusing it beats silently treating it as a literal.
            Some(_) => Err("`*` is only allowed at the end of a pattern"),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(exact) => name == exact,
            Self::Prefix(prefix) => name.starts_with(prefix.as_str()),
            Self::Any => true,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
            Self::Any => f.write_str("*"),
        }
    }
}

/// One parsed scope: `publish:orders`, `subscribe:web-*`, `group:*`, `admin`.
///
/// Displays in canonical form (`admin:*` as `admin`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    action: Action,
    pattern: Pattern,
}

impl Scope {
    /// Parses one scope; `admin` and `admin:*` are the admin scope.
    ///
    /// # Errors
    /// A reason when `text` is not a tidegate scope.
    fn parse(text: &str) -> Result<Self, &'static str> {
        let (action, pattern) = text.split_once(':').unwrap_or((text, ""));
        let action = match action {
            "publish" => Action::Publish,
            "subscribe" => Action::Subscribe,
            "group" => Action::Group,
            "admin" if pattern.is_empty() || pattern == "*" => {
                return Ok(Self {
                    action: Action::Admin,
                    pattern: Pattern::Any,
                });
            }
            "admin" => return Err("`admin` takes no pattern (write `admin` or `admin:*`)"),
            _ => return Err("unknown action (expected publish, subscribe, group or admin)"),
        };
        Ok(Self {
            action,
            pattern: Pattern::parse(pattern)?,
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.action {
            Action::Admin => f.write_str("admin"),
            action => write!(f, "{}:{}", action.as_str(), self.pattern),
        }
    }
}

/// The scopes of one verified token.
///
/// Displays as the canonical space-separated `scope` claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Parses a space-separated scope string strictly: every entry must be a tidegate scope.
    ///
    /// Meant for scopes we are about to grant (`tidegate token --scope`), where a typo such as
    /// `publsh:orders` should fail loudly. Scopes read from a token go through
    /// [`Scopes::from_token`] instead.
    ///
    /// # Errors
    /// [`AuthError::InvalidScope`] naming the first bad entry.
    pub fn parse(space_separated: &str) -> Result<Self, AuthError> {
        space_separated
            .split_whitespace()
            .map(|item| {
                Scope::parse(item)
                    .map_err(|why| AuthError::InvalidScope(format!("`{item}`: {why}")))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Builds the scopes of a token from its `scope` string (split on whitespace) or its `scp`
    /// array items, ignoring every entry that is not a tidegate scope.
    ///
    /// Ignoring instead of refusing lets tokens from a shared identity provider, which carry
    /// scopes like `openid` or `email` for other services, still work here. The ignored
    /// entries grant nothing, so this can only ever narrow access.
    pub fn from_token<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Self {
        let mut scopes = Vec::new();
        for item in items {
            scopes.extend(
                item.as_ref()
                    .split_whitespace()
                    .filter_map(|one| Scope::parse(one).ok()),
            );
        }
        Self(scopes)
    }

    /// The scopes in token order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Whether these scopes allow `action` on the topic or group `resource`.
    ///
    /// `admin` allows everything; asking for [`Action::Admin`] itself ignores `resource`.
    pub fn allows(&self, action: Action, resource: &str) -> bool {
        self.0.iter().any(|scope| {
            scope.action == Action::Admin
                || (scope.action == action && scope.pattern.matches(resource))
        })
    }

    /// Whether the token carries the `admin` scope.
    pub fn is_admin(&self) -> bool {
        self.0.iter().any(|scope| scope.action == Action::Admin)
    }

    /// Whether the token may do anything with `topic` (publish, subscribe or admin); listings
    /// show only such topics.
    pub fn can_see_topic(&self, topic: &str) -> bool {
        self.allows(Action::Publish, topic) || self.allows(Action::Subscribe, topic)
    }

    /// Whether the token may do anything with the consumer group `group`; listings show only
    /// such groups.
    pub fn can_see_group(&self, group: &str) -> bool {
        self.allows(Action::Group, group)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{scope}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn scopes(text: &str) -> Scopes {
        Scopes::parse(text).expect("valid scopes")
    }

    #[test]
    fn exact_prefix_and_any_patterns() {
        let s = scopes("publish:orders subscribe:web-* group:*");
        assert!(s.allows(Action::Publish, "orders"));
        assert!(!s.allows(Action::Publish, "orders-eu"));
        assert!(!s.allows(Action::Subscribe, "orders"));
        assert!(s.allows(Action::Subscribe, "web-clicks"));
        assert!(s.allows(Action::Subscribe, "web-"));
        assert!(!s.allows(Action::Subscribe, "web"));
        assert!(s.allows(Action::Group, "anything"));
        assert!(!s.allows(Action::Admin, ""));
        assert!(!s.is_admin());
    }

    #[test]
    fn admin_allows_everything() {
        for text in ["admin", "admin:*"] {
            let s = scopes(text);
            assert!(s.is_admin());
            assert!(s.allows(Action::Publish, "x"));
            assert!(s.allows(Action::Admin, ""));
            assert!(s.can_see_topic("x"));
            assert!(s.can_see_group("g"));
        }
    }

    #[test]
    fn visibility_follows_scopes() {
        let s = scopes("publish:a subscribe:b* group:g1");
        assert!(s.can_see_topic("a"));
        assert!(s.can_see_topic("b2"));
        assert!(!s.can_see_topic("c"));
        assert!(s.can_see_group("g1"));
        assert!(!s.can_see_group("g2"));
        assert!(!Scopes::default().can_see_topic("a"));
    }

    #[test]
    fn strict_parse_rejects_what_tokens_ignore() {
        for bad in [
            "publsh:orders",
            "publish:",
            "publish",
            "subscribe:a*b",
            "admin:orders",
            "*",
        ] {
            assert!(
                matches!(Scopes::parse(bad), Err(AuthError::InvalidScope(_))),
                "{bad} should be rejected"
            );
            assert_eq!(
                Scopes::from_token([bad]),
                Scopes::default(),
                "{bad} should be ignored"
            );
        }
    }

    #[test]
    fn token_scopes_from_string_or_array() {
        let from_string = Scopes::from_token(["openid publish:a  email\tsubscribe:*"]);
        let from_array = Scopes::from_token(["openid", "publish:a", "subscribe:*"]);
        assert_eq!(from_string, from_array);
        assert_eq!(from_string.to_string(), "publish:a subscribe:*");
        assert!(from_array.allows(Action::Subscribe, "z"));
    }

    #[test]
    fn display_round_trips() {
        let text = "publish:orders subscribe:web-* group:* admin";
        assert_eq!(scopes(text).to_string(), text);
        assert_eq!(scopes("admin:*").to_string(), "admin");
    }

    proptest! {
        #[test]
        fn prefix_matches_exactly_the_names_starting_with_it(
            prefix in "[a-z.-]{0,6}",
            name in "[a-z.-]{0,8}",
        ) {
            let s = scopes(&format!("subscribe:{prefix}*"));
            prop_assert_eq!(s.allows(Action::Subscribe, &name), name.starts_with(&prefix));
            prop_assert!(!s.allows(Action::Publish, &name));
        }
    }
}
