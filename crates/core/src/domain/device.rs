//! User-agent parsing into a device description, with woothee.

/// Operating system, browser and device type derived from a user agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Human name such as "Firefox on Linux".
    pub name: String,
    /// woothee category: `pc`, `smartphone`, `mobilephone`, `crawler`, `appliance`, `unknown`.
    pub device_type: String,
    /// Operating system, when known.
    pub os: Option<String>,
    /// Browser, when known.
    pub browser: Option<String>,
}

/// Longest user agent we keep; anything longer is truncated before parsing and storage.
pub const MAX_USER_AGENT: usize = 512;

/// Describes the device behind `user_agent`.
#[must_use]
pub fn describe(user_agent: Option<&str>) -> DeviceInfo {
    let parsed = user_agent.and_then(|ua| woothee::parser::Parser::new().parse(ua));
    let known =
        |s: &str| (!s.is_empty() && s != woothee::woothee::VALUE_UNKNOWN).then(|| s.to_owned());
    let (os, browser, device_type) = match &parsed {
        Some(r) => (
            known(r.os),
            known(r.name),
            known(r.category).unwrap_or_else(|| "unknown".to_owned()),
        ),
        None => (None, None, "unknown".to_owned()),
    };
    let name = match (&browser, &os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.clone(),
        (None, Some(o)) => o.clone(),
        (None, None) => "Unknown device".to_owned(),
    };
    DeviceInfo {
        name,
        device_type,
        os,
        browser,
    }
}

/// Truncates a user agent to [`MAX_USER_AGENT`] bytes on a character boundary.
#[must_use]
pub fn clamp_user_agent(ua: &str) -> String {
    let mut end = ua.len().min(MAX_USER_AGENT);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    ua[..end].chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desktop_firefox_is_recognised() {
        let d = describe(Some(
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ));
        assert_eq!(d.browser.as_deref(), Some("Firefox"));
        assert_eq!(d.os.as_deref(), Some("Linux"));
        assert_eq!(d.device_type, "pc");
        assert_eq!(d.name, "Firefox on Linux");
    }

    #[test]
    fn iphone_is_a_smartphone() {
        let d = describe(Some(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        ));
        assert_eq!(d.device_type, "smartphone");
    }

    #[test]
    fn missing_user_agent_is_unknown() {
        let d = describe(None);
        assert_eq!(d.device_type, "unknown");
        assert_eq!(d.name, "Unknown device");
    }
}
