//! The administrators' user list ([`UserStore::list_users`]) for both backends: the filter is
//! written once; only how a search prefix meets an index differs ([`PrefixIndex`]).
//!
//! A page is chosen by id first (`select id … order by created_at, id limit … offset …`, which
//! reads `users_by_created` or the search's index ranges and nothing else) and only its rows are
//! then read in full, so the per-row work (the roles subquery) is done for one page, never for
//! every match.
//!
//! [`UserStore::list_users`]: porteiro_core::store::UserStore::list_users

use chrono::{DateTime, Utc};
use porteiro_core::domain::UserQuery;
use uuid::Uuid;

use crate::Arg;

/// How a backend turns a search prefix into an index scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixIndex {
    /// `col >= prefix and col < upper bound` over the column's unique index. SQLite: its `like`
    /// is case-insensitive for ASCII and so cannot use the (binary) indexes; a range over them
    /// is exact, because the binary collation orders by UTF-8 bytes, that is by code point.
    Range,
    /// `col like prefix || '%' escape '\'` with `%`, `_` and `\` escaped. PostgreSQL: the
    /// `text_pattern_ops` indexes of migration 0009 serve it whatever the collation.
    Like,
}

/// An owned statement argument (see [`Arg`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterArg {
    /// Text.
    Text(String),
    /// A time.
    Time(DateTime<Utc>),
    /// An id.
    Uuid(Uuid),
    /// An integer.
    Int(i64),
}

impl FilterArg {
    /// The argument to bind.
    #[must_use]
    pub fn as_arg(&self) -> Arg<'_> {
        match self {
            Self::Text(t) => Arg::Text(t),
            Self::Time(t) => Arg::Time(*t),
            Self::Uuid(id) => Arg::Uuid(*id),
            Self::Int(i) => Arg::Int(*i),
        }
    }
}

/// The statements of one list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserListSql {
    /// `select id from users where … order by created_at, id limit … offset …`: the page's ids,
    /// to use as `where id in (…)`, reading the search's index ranges and the role's holders
    /// through `user_roles_by_role`. Takes every argument of [`UserListSql::args`].
    pub page_ids: String,
    /// The same page read the other way ([`PrefixIndex::Range`] only, when there is a search
    /// or a role): walking `users_by_created` and testing each account, which stops as soon as
    /// the page is full. Much faster when the filter matches a large share of the accounts
    /// (searching `a`, the role everyone has), much slower when it matches few: the backend
    /// chooses by the count (see [`prefer_creation_order`]). Takes the same arguments.
    pub page_ids_by_creation: Option<String>,
    /// `select count(*) as n from users where …`. Takes the first [`UserListSql::count_args`]
    /// arguments.
    pub count: String,
    /// The arguments, `$1` first.
    pub args: Vec<FilterArg>,
    /// How many of `args` the count takes (the page also takes the limit and offset).
    pub count_args: usize,
}

/// Builds the statements listing `limit` users of `query` from `offset`.
#[must_use]
pub fn list_sql(query: &UserQuery, how: PrefixIndex, offset: u64, limit: u64) -> UserListSql {
    let mut args = Vec::new();
    // The same conditions twice: for reading through the filter's indexes, and for testing
    // rows met in creation order (`+col` keeps SQLite from using an index for the term).
    let mut indexed = Vec::new();
    let mut tested = Vec::new();
    if let Some(prefix) = &query.prefix {
        let (mut any, mut any_tested) = (Vec::new(), Vec::new());
        for (column, value) in [
            ("email", Some(&prefix.email)),
            ("username_key", prefix.username_key.as_ref()),
        ] {
            let Some(value) = value else { continue };
            match how {
                PrefixIndex::Range => {
                    let low = next(&mut args, FilterArg::Text(value.clone()));
                    if let Some(high) = prefix_upper_bound(value) {
                        let high = next(&mut args, FilterArg::Text(high));
                        any.push(format!("({column} >= {low} and {column} < {high})"));
                        any_tested.push(format!("(+{column} >= {low} and +{column} < {high})"));
                    } else {
                        any.push(format!("{column} >= {low}"));
                        any_tested.push(format!("+{column} >= {low}"));
                    }
                }
                PrefixIndex::Like => {
                    let pattern = next(&mut args, FilterArg::Text(like_escape(value)));
                    any.push(format!("{column} like ({pattern} || '%') escape '\\'"));
                }
            }
        }
        indexed.push(format!("({})", any.join(" or ")));
        if !any_tested.is_empty() {
            tested.push(format!("({})", any_tested.join(" or ")));
        }
    }
    let mut both = |term: String| {
        indexed.push(term.clone());
        tested.push(term);
    };
    match query.active {
        Some(true) => both("is_active".to_owned()),
        Some(false) => both("not is_active".to_owned()),
        None => {}
    }
    if let Some(locked) = query.locked {
        let now = next(&mut args, FilterArg::Time(query.now));
        both(if locked {
            format!("locked_until > {now}")
        } else {
            format!("(locked_until is null or locked_until <= {now})")
        });
    }
    if let Some(role_id) = query.role_id {
        let role = next(&mut args, FilterArg::Uuid(role_id));
        indexed.push(format!(
            "id in (select ur.user_id from user_roles ur where ur.role_id = {role})"
        ));
        tested.push(format!(
            "exists (select 1 from user_roles ur where ur.user_id = users.id and ur.role_id = {role})"
        ));
    }
    let filter = |terms: &[String]| {
        if terms.is_empty() {
            String::new()
        } else {
            format!(" where {}", terms.join(" and "))
        }
    };
    let count_args = args.len();
    let limit = next(
        &mut args,
        FilterArg::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
    );
    let offset = next(
        &mut args,
        FilterArg::Int(i64::try_from(offset).unwrap_or(i64::MAX)),
    );
    let page = |terms: &[String]| {
        format!(
            "select id from users{} order by created_at, id limit {limit} offset {offset}",
            filter(terms)
        )
    };
    let alternative =
        how == PrefixIndex::Range && (query.prefix.is_some() || query.role_id.is_some());
    let only_role = query.role_id.is_some() && indexed.len() == 1;
    let count = if only_role {
        // Each assignment names an existing account (foreign key) once (primary key): counting
        // the role's assignments, which reads only `user_roles_by_role`, counts its holders.
        "select count(*) as n from user_roles where role_id = $1".to_owned()
    } else {
        format!("select count(*) as n from users{}", filter(&indexed))
    };
    UserListSql {
        page_ids: page(&indexed),
        page_ids_by_creation: alternative.then(|| page(&tested)),
        count,
        args,
        count_args,
    }
}

/// Whether to read a page of a filtered list in creation order
/// ([`UserListSql::page_ids_by_creation`]) rather than through the filter's indexes: when
/// walking `users_by_created` until `offset + limit` matches are met (about
/// `(offset + limit) × accounts / matches` rows, if the matches are spread evenly) costs less
/// than fetching and sorting all `matches` — with some margin, since a walk tests each row.
#[must_use]
pub fn prefer_creation_order(matches: u64, accounts: u64, offset: u64, limit: u64) -> bool {
    if matches == 0 {
        return false;
    }
    let walked =
        u128::from(offset.saturating_add(limit)) * u128::from(accounts) / u128::from(matches);
    walked <= u128::from(matches) * 2
}

/// Adds `arg` and returns its placeholder.
fn next(args: &mut Vec<FilterArg>, arg: FilterArg) -> String {
    args.push(arg);
    format!("${}", args.len())
}

/// The least string greater than every string that starts with `prefix`, in code-point order:
/// `prefix` with its last character replaced by the next one (characters that have none are
/// dropped first). `None` when there is no such string (`prefix` empty or all `char::MAX`).
#[must_use]
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            // The surrogates are no characters: the next one after U+D7FF is U+E000.
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// `s` with `like`'s metacharacters (`%`, `_`) and the escape character `\` escaped by `\`.
#[must_use]
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use porteiro_core::domain::SearchPrefix;

    #[test]
    fn the_upper_bound_is_the_next_string_after_every_extension() {
        assert_eq!(prefix_upper_bound("ana").as_deref(), Some("anb"));
        assert_eq!(prefix_upper_bound("a@z").as_deref(), Some("a@{"));
        assert_eq!(
            prefix_upper_bound("jos\u{e9}").as_deref(),
            Some("jos\u{ea}")
        );
        assert_eq!(
            prefix_upper_bound("a\u{D7FF}").as_deref(),
            Some("a\u{E000}")
        );
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(prefix_upper_bound(""), None);
        // Byte order is code-point order: the bound sorts after every extension as bytes too.
        for ext in ["", "a", "\u{10FFFF}\u{10FFFF}", "zzz"] {
            let s = format!("jos\u{e9}{ext}");
            assert!(s.as_bytes() < prefix_upper_bound("jos\u{e9}").unwrap().as_bytes());
        }
    }

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(like_escape(r"a_b%c\d"), r"a\_b\%c\\d");
        assert_eq!(like_escape("plain"), "plain");
    }

    #[test]
    fn every_filter_is_one_numbered_argument_and_the_page_comes_last() {
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let query = UserQuery {
            prefix: SearchPrefix::parse("An_a").unwrap(),
            active: Some(true),
            locked: Some(false),
            role_id: Some(Uuid::nil()),
            now,
        };
        let like = list_sql(&query, PrefixIndex::Like, 40, 20);
        assert_eq!(
            like.count,
            "select count(*) as n from users where (email like ($1 || '%') escape '\\' or \
             username_key like ($2 || '%') escape '\\') and is_active and \
             (locked_until is null or locked_until <= $3) and \
             id in (select ur.user_id from user_roles ur where ur.role_id = $4)"
        );
        assert_eq!(like.page_ids_by_creation, None);
        assert!(
            like.page_ids
                .ends_with("order by created_at, id limit $5 offset $6")
        );
        assert_eq!(like.count_args, 4);
        assert_eq!(like.args[0], FilterArg::Text(r"an\_a".to_owned()));
        assert_eq!(like.args[4..], [FilterArg::Int(20), FilterArg::Int(40)]);
        let range = list_sql(&query, PrefixIndex::Range, 0, 20);
        assert!(
            range.count.contains(
                "((email >= $1 and email < $2) or (username_key >= $3 and username_key < $4))"
            ),
            "{}",
            range.count
        );
        assert_eq!(range.args[1], FilterArg::Text("an_b".to_owned()));
        let walk = range.page_ids_by_creation.unwrap();
        assert!(
            walk.contains("((+email >= $1 and +email < $2) or (+username_key >= $3 and +username_key < $4))")
                && walk.contains("exists (select 1 from user_roles ur where ur.user_id = users.id and ur.role_id = $6)"),
            "{walk}"
        );
        let all = list_sql(&UserQuery::all(now), PrefixIndex::Range, 0, 20);
        assert_eq!(all.count, "select count(*) as n from users");
        assert_eq!(all.count_args, 0);
        assert_eq!(all.page_ids_by_creation, None);
        let role = UserQuery {
            role_id: Some(Uuid::nil()),
            ..UserQuery::all(now)
        };
        let role = list_sql(&role, PrefixIndex::Like, 0, 20);
        assert_eq!(
            role.count,
            "select count(*) as n from user_roles where role_id = $1"
        );
        assert_eq!(role.count_args, 1);
    }

    #[test]
    fn a_broad_filter_is_walked_in_creation_order_and_a_narrow_one_read_by_index() {
        assert!(prefer_creation_order(500_000, 1_000_000, 0, 20));
        assert!(prefer_creation_order(111_111, 1_000_000, 0, 20));
        assert!(!prefer_creation_order(11, 1_000_000, 0, 20));
        assert!(!prefer_creation_order(2_000, 1_000_000, 0, 20));
        // Deep pages of a broad match walk far: read by index then.
        assert!(!prefer_creation_order(111_111, 1_000_000, 100_000, 20));
        assert!(!prefer_creation_order(0, 1_000_000, 0, 20));
    }
}
