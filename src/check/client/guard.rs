//! A walk over a response body before the `kafka-protocol` crate decodes it, so that no count
//! read off the wire can make the decoder reserve more memory than the frame could hold.
//!
//! The crate's array decoders call `Vec::with_capacity(count)` with the count as the peer sent
//! it, before decoding a single element (`protocol::types::Array::decode`). A response of a few
//! bytes that claims 2^31 brokers asks for hundreds of GiB up front, and the allocator's failure
//! aborts the process: no `Result`, no panic to catch. This is reported upstream
//! (kafka-protocol-rs pull requests 152, 161 and 200, none merged in 0.18).
//!
//! Until the crate bounds its own counts, `check` asks only for the non-flexible versions below
//! and walks each response here first. Every element of a Kafka array takes at least one byte on
//! the wire, so a count larger than the bytes left is refused, and every string and byte field is
//! checked against what is left. A body that passes decodes with allocations bounded by the frame
//! size. The layouts are the ones in Kafka's message schemas
//! (`clients/src/main/resources/common/message/*Response.json`).

use std::fmt;

use kafka_protocol::messages::ApiKey;

/// The versions of each API this client asks for, and so the only ones the guard walks. All are
/// non-flexible (no tagged fields, no compact encodings), and all are still served by Kafka 4.
pub mod versions {
    use std::ops::RangeInclusive;
    /// ApiVersions v0: every broker answers it, even one that supports nothing newer.
    pub const API_VERSIONS: i16 = 0;
    /// Metadata v1 (racks and the controller) to v8; v9 is the first flexible version.
    pub const METADATA: RangeInclusive<i16> = 1..=8;
    /// DescribeConfigs v1 to v3; v4 is flexible.
    pub const DESCRIBE_CONFIGS: RangeInclusive<i16> = 1..=3;
    /// SaslHandshake v1: the version that wraps the exchange in SaslAuthenticate.
    pub const SASL_HANDSHAKE: RangeInclusive<i16> = 1..=1;
    /// SaslAuthenticate v0 and v1; v2 is flexible.
    pub const SASL_AUTHENTICATE: RangeInclusive<i16> = 0..=1;
}

/// Why a response body was refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Walks the body of a response to `key` at `version`. Ok means every count and length in it fits
/// in the bytes that follow it.
pub fn check(key: ApiKey, version: i16, body: &[u8]) -> Result<(), Malformed> {
    let mut w = Walk { buf: body };
    match key {
        ApiKey::ApiVersions if version == versions::API_VERSIONS => {
            w.int16()?;
            w.array(6, |w| w.skip(6))
        }
        ApiKey::Metadata if versions::METADATA.contains(&version) => metadata(&mut w, version),
        ApiKey::DescribeConfigs if versions::DESCRIBE_CONFIGS.contains(&version) => {
            describe_configs(&mut w, version)
        }
        ApiKey::SaslHandshake if versions::SASL_HANDSHAKE.contains(&version) => {
            w.int16()?;
            w.array(2, |w| w.string(false))
        }
        ApiKey::SaslAuthenticate if versions::SASL_AUTHENTICATE.contains(&version) => {
            w.int16()?;
            w.string(true)?;
            w.bytes()?;
            if version >= 1 {
                w.skip(8)?;
            }
            Ok(())
        }
        _ => Err(Malformed(format!(
            "no guard for {key:?} v{version}: this client does not ask for it"
        ))),
    }
}

fn metadata(w: &mut Walk<'_>, v: i16) -> Result<(), Malformed> {
    if v >= 3 {
        w.skip(4)?; // throttle_time_ms
    }
    // brokers: node_id, host, port, rack
    w.array(4 + 2 + 4 + 2, |w| {
        w.skip(4)?;
        w.string(false)?;
        w.skip(4)?;
        w.string(true)
    })?;
    if v >= 2 {
        w.string(true)?; // cluster_id
    }
    w.skip(4)?; // controller_id
    w.array(2 + 2 + 1 + 4, |w| {
        w.int16()?;
        w.string(false)?;
        w.skip(1)?; // is_internal
        w.array(2 + 4 + 4 + 4 + 4, |w| {
            w.skip(2 + 4 + 4)?;
            if v >= 7 {
                w.skip(4)?; // leader_epoch
            }
            w.array(4, |w| w.skip(4))?; // replica_nodes
            w.array(4, |w| w.skip(4))?; // isr_nodes
            if v >= 5 {
                w.array(4, |w| w.skip(4))?; // offline_replicas
            }
            Ok(())
        })?;
        if v >= 8 {
            w.skip(4)?; // topic_authorized_operations
        }
        Ok(())
    })?;
    if v >= 8 {
        w.skip(4)?; // cluster_authorized_operations
    }
    Ok(())
}

fn describe_configs(w: &mut Walk<'_>, v: i16) -> Result<(), Malformed> {
    w.skip(4)?; // throttle_time_ms
    w.array(2 + 2 + 1 + 2 + 4, |w| {
        w.int16()?;
        w.string(true)?; // error_message
        w.skip(1)?; // resource_type
        w.string(false)?; // resource_name
        w.array(2 + 2 + 1 + 1 + 1 + 4, |w| {
            w.string(false)?; // name
            w.string(true)?; // value
            w.skip(1 + 1 + 1)?; // read_only, config_source, is_sensitive
            w.array(2 + 2 + 1, |w| {
                w.string(false)?;
                w.string(true)?;
                w.skip(1)
            })?;
            if v >= 3 {
                w.skip(1)?; // config_type
                w.string(true)?; // documentation
            }
            Ok(())
        })
    })
}

struct Walk<'a> {
    buf: &'a [u8],
}

impl Walk<'_> {
    fn skip(&mut self, n: usize) -> Result<(), Malformed> {
        if self.buf.len() < n {
            return Err(Malformed(format!(
                "the body ends {} bytes early",
                n - self.buf.len()
            )));
        }
        self.buf = &self.buf[n..];
        Ok(())
    }

    fn int16(&mut self) -> Result<i16, Malformed> {
        let b = self.buf.get(..2).ok_or_else(short)?;
        let v = i16::from_be_bytes([b[0], b[1]]);
        self.buf = &self.buf[2..];
        Ok(v)
    }

    fn int32(&mut self) -> Result<i32, Malformed> {
        let b = self.buf.get(..4).ok_or_else(short)?;
        let v = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        self.buf = &self.buf[4..];
        Ok(v)
    }

    /// A STRING (int16 length), or a NULLABLE_STRING whose length may be -1.
    fn string(&mut self, nullable: bool) -> Result<(), Malformed> {
        match self.int16()? {
            -1 if nullable => Ok(()),
            n if n >= 0 => self.skip(n as usize),
            n => Err(Malformed(format!("a string of length {n}"))),
        }
    }

    /// BYTES (int32 length).
    fn bytes(&mut self) -> Result<(), Malformed> {
        match self.int32()? {
            n if n >= 0 => self.skip(n as usize),
            n => Err(Malformed(format!("a byte field of length {n}"))),
        }
    }

    /// An ARRAY (int32 count; -1 is null) whose elements each take at least `min` bytes.
    fn array(
        &mut self,
        min: usize,
        mut each: impl FnMut(&mut Self) -> Result<(), Malformed>,
    ) -> Result<(), Malformed> {
        let n = self.int32()?;
        if n == -1 {
            return Ok(());
        }
        let Ok(count) = usize::try_from(n) else {
            return Err(Malformed(format!("an array of {n} elements")));
        };
        if count.saturating_mul(min) > self.buf.len() {
            return Err(Malformed(format!(
                "an array of {count} elements in {} bytes",
                self.buf.len()
            )));
        }
        for _ in 0..count {
            each(self)?;
        }
        Ok(())
    }
}

fn short() -> Malformed {
    Malformed("the body ends early".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::any;

    #[test]
    fn a_metadata_body_claiming_two_billion_brokers_is_refused_before_decoding() {
        let mut body = vec![0, 0, 0, 0]; // throttle
        body.extend(0x7fff_ffffi32.to_be_bytes());
        body.extend([0; 8]);
        let e = check(ApiKey::Metadata, 8, &body).unwrap_err();
        assert!(e.0.contains("2147483647 elements"), "{e}");
    }

    #[test]
    fn an_api_versions_body_that_ends_inside_an_entry_is_refused() {
        let mut body = vec![0, 0];
        body.extend(2i32.to_be_bytes());
        body.extend([0; 8]);
        assert!(check(ApiKey::ApiVersions, 0, &body).is_err());
    }

    proptest::proptest! {
        /// Whatever the crate encodes at the versions asked for, the guard lets through, and it
        /// decodes to the same value.
        #[test]
        fn every_well_formed_metadata_and_describe_configs_answer_passes(
            brokers in proptest::collection::vec((any::<i32>(), "[a-z0-9.-]{0,40}", any::<i32>(), proptest::option::of("[a-z]{0,8}")), 0..8),
            cluster in proptest::option::of("[A-Za-z0-9]{0,22}"),
            message in proptest::option::of(".{0,60}"),
            configs in proptest::collection::vec(("[a-z.]{1,20}", proptest::option::of(".{0,20}"), proptest::collection::vec(("[a-z.]{1,10}", proptest::option::of("[0-9]{0,4}")), 0..3)), 0..4),
        ) {
            use kafka_protocol::messages::describe_configs_response::{
                DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
            };
            use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
            use kafka_protocol::messages::{BrokerId, DescribeConfigsResponse, MetadataResponse};
            use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
            let s = |x: &String| StrBytes::from_string(x.clone());
            let meta = MetadataResponse::default()
                .with_brokers(brokers.iter().map(|(id, host, port, rack)| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(*id))
                        .with_host(s(host))
                        .with_port(*port)
                        .with_rack(rack.as_ref().map(s))
                }).collect())
                .with_cluster_id(cluster.as_ref().map(s));
            for v in versions::METADATA {
                let mut buf = bytes::BytesMut::new();
                meta.encode(&mut buf, v).unwrap();
                proptest::prop_assert!(check(ApiKey::Metadata, v, &buf).is_ok(), "v{v}");
                let back = MetadataResponse::decode(&mut buf.freeze(), v).unwrap();
                proptest::prop_assert_eq!(back.brokers.len(), brokers.len());
            }
            let result = DescribeConfigsResult::default()
                .with_error_message(message.as_ref().map(s))
                .with_configs(configs.iter().map(|(n, val, syn)| {
                    DescribeConfigsResourceResult::default()
                        .with_name(s(n))
                        .with_value(val.as_ref().map(s))
                        .with_synonyms(syn.iter().map(|(n, v)| {
                            DescribeConfigsSynonym::default().with_name(s(n)).with_value(v.as_ref().map(s))
                        }).collect())
                }).collect());
            let dc = DescribeConfigsResponse::default().with_results(vec![result]);
            for v in versions::DESCRIBE_CONFIGS {
                let mut buf = bytes::BytesMut::new();
                let mut dc = dc.clone();
                if v < 3 {
                    for r in &mut dc.results {
                        for c in &mut r.configs {
                            c.documentation = None;
                        }
                    }
                }
                dc.encode(&mut buf, v).unwrap();
                proptest::prop_assert!(check(ApiKey::DescribeConfigs, v, &buf).is_ok(), "v{v}");
                proptest::prop_assert!(DescribeConfigsResponse::decode(&mut buf.freeze(), v).is_ok());
            }
        }
    }

    #[test]
    fn a_version_this_client_never_asks_for_is_refused() {
        assert!(check(ApiKey::Metadata, 12, &[]).is_err());
        assert!(check(ApiKey::Produce, 3, &[]).is_err());
    }
}
