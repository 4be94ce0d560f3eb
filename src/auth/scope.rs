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
        let (name, wildcard) = match text.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (text, false),
        };
        // Topic and group names are made of these characters only, so a pattern with any
        // other (whitespace, controls, a `*` inside) could never mean what it seems to; it
        // is refused rather than read as a literal.
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err("a pattern is a name of [A-Za-z0-9._-], optionally ending in `*`");
        }
        match (name, wildcard) {
            ("", false) => Err("empty name pattern"),
            ("", true) => Ok(Self::Any),
            (prefix, true) => Ok(Self::Prefix(prefix.to_owned())),
            (exact, false) => Ok(Self::Exact(exact.to_owned())),
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
        let action = match text.split_once(':') {
            None if text == "admin" => Action::Admin,
            None => return Err("expected ACTION:PATTERN or `admin`"),
            Some(("admin", "*")) => Action::Admin,
            Some(("admin", _)) => {
                return Err("`admin` takes no pattern (write `admin` or `admin:*`)");
            }
            Some(("publish", _)) => Action::Publish,
            Some(("subscribe", _)) => Action::Subscribe,
            Some(("group", _)) => Action::Group,
            Some(_) => return Err("unknown action (expected publish, subscribe, group or admin)"),
        };
        let pattern = match (action, text.split_once(':')) {
            (Action::Admin, _) | (_, None) => Pattern::Any,
            (_, Some((_, pattern))) => Pattern::parse(pattern)?,
        };
        Ok(Self { action, pattern })
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
    /// Parses a scope string strictly: every entry must be a tidegate scope.
    ///
    /// Entries are separated by ASCII spaces only, as OAuth 2.0 (RFC 6749 §3.3) defines the
    /// `scope` string. Meant for scopes we are about to grant (`tidegate token --scope`),
    /// where a typo such as `publsh:orders` should fail loudly. Scopes read from a token go
    /// through [`Scopes::from_token`] instead.
    ///
    /// # Errors
    /// [`AuthError::InvalidScope`] naming the first bad entry.
    pub fn parse(space_separated: &str) -> Result<Self, AuthError> {
        split_scope_string(space_separated)
            .map(|item| {
                Scope::parse(item).map_err(|why| {
                    AuthError::InvalidScope(format!("{}: {why}", crate::echo::quoted(item)))
                })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Builds the scopes of a token from whole scope items, ignoring every item that is not
    /// a tidegate scope. Items are never split here: the caller splits a `scope` string with
    /// [`split_scope_string`] and takes each `scp` array element as one item.
    ///
    /// Ignoring instead of refusing lets tokens from a shared identity provider, which carry
    /// scopes like `openid` or `email` for other services, still work here. The ignored
    /// entries grant nothing, so this can only ever narrow access.
    pub fn from_token<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Self {
        Self(
            items
                .into_iter()
                .filter_map(|item| Scope::parse(item.as_ref()).ok())
                .collect(),
        )
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

/// The items of an OAuth 2.0 `scope` string: separated by ASCII spaces and nothing else.
/// A tab, a no-break space or a line separator stays inside its item, which then does not
/// parse and grants nothing.
pub fn split_scope_string(scope: &str) -> impl Iterator<Item = &str> {
    scope.split(' ').filter(|item| !item.is_empty())
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
    fn scope_strings_split_on_ascii_space_only() {
        let items: Vec<&str> = split_scope_string("openid publish:a  subscribe:*").collect();
        assert_eq!(items, ["openid", "publish:a", "subscribe:*"]);
        let from_string = Scopes::from_token(split_scope_string("openid publish:a  subscribe:*"));
        let from_array = Scopes::from_token(["openid", "publish:a", "subscribe:*"]);
        assert_eq!(from_string, from_array);
        assert_eq!(from_string.to_string(), "publish:a subscribe:*");
        // Any other separator keeps the item whole, and a whole item with whitespace inside
        // is no scope at all: it must never smuggle in `admin`.
        for separator in [
            "\t", "\n", "\r", "\u{a0}", "\u{85}", "\u{2003}", "\u{3000}", "\u{2028}", "\u{b}",
            "\u{c}",
        ] {
            let scope = format!("publish:x{separator}admin");
            let scopes = Scopes::from_token(split_scope_string(&scope));
            assert_eq!(scopes, Scopes::default(), "{scope:?}");
            assert!(!scopes.is_admin());
        }
    }

    #[test]
    fn array_items_are_never_split() {
        let scopes = Scopes::from_token(["publish:x admin", "subscribe:y"]);
        assert!(!scopes.is_admin());
        assert!(!scopes.allows(Action::Publish, "x"));
        assert!(scopes.allows(Action::Subscribe, "y"));
    }

    #[test]
    fn malformed_scopes_grant_nothing() {
        for bad in [
            "admin:",
            "admin: ",
            "admin:x",
            "admin:**",
            "publish:",
            "publish:*x",
            "publish:a*b",
            "publish:**",
            "publish:a b",
            "publish:a\u{0}",
            "publish:a\u{1b}",
            "publish:é",
            "publish:a/b",
            "publish",
            ":orders",
            "publish::a",
            "Publish:a",
            "admin\t",
        ] {
            assert_eq!(Scopes::from_token([bad]), Scopes::default(), "{bad:?}");
            assert!(Scopes::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Scopes::from_token(["admin"]).is_admin());
        assert!(Scopes::from_token(["admin:*"]).is_admin());
        assert!(Scopes::from_token(["publish:*"]).allows(Action::Publish, "any"));
        assert!(Scopes::from_token(["group:web-*"]).allows(Action::Group, "web-1"));
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
