//! Approximate place of an address, from a local MaxMind City database (`GEOIP_DATABASE`, a
//! GeoIP2 or GeoLite2 `.mmdb` file read into memory at start-up). Never a network call: without
//! the file there is simply no place.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use crate::mail::Locale;

/// A loaded City database.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GeoIp")
    }
}

/// The part of a City record we read: localised names of the city and the country.
#[derive(Debug, Deserialize)]
struct CityRecord {
    city: Option<Named>,
    country: Option<Named>,
}

#[derive(Debug, Deserialize)]
struct Named {
    #[serde(default)]
    names: BTreeMap<String, String>,
}

impl Named {
    fn name(&self, locale: Locale) -> Option<&str> {
        self.names
            .get(locale.tag())
            .or_else(|| self.names.get("en"))
            .map(String::as_str)
            .filter(|n| !n.is_empty())
    }
}

impl GeoIp {
    /// Reads the database at `path`.
    ///
    /// # Errors
    /// A message naming what is wrong with the file (unreadable, not a MaxMind database).
    pub fn open(path: &Path) -> Result<Self, String> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|e| e.to_string())?;
        Ok(Self { reader })
    }

    /// "City, Country" (or just the country) for `ip`, in `locale` when the database has names
    /// in it (else English); `None` for an address it does not know or a malformed one.
    #[must_use]
    pub fn place(&self, ip: &str, locale: Locale) -> Option<String> {
        let ip: IpAddr = ip.parse().ok()?;
        let record: CityRecord = self.reader.lookup(ip).ok()?.decode().ok()??;
        let city = record.city.as_ref().and_then(|c| c.name(locale));
        let country = record.country.as_ref().and_then(|c| c.name(locale));
        match (city, country) {
            (Some(city), Some(country)) => Some(format!("{city}, {country}")),
            (None, Some(only)) | (Some(only), None) => Some(only.to_owned()),
            (None, None) => None,
        }
    }
}
