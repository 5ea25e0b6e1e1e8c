//! Checks of a pipeline's consumer-group settings: the options tidemill owns,
//! static membership ids, and what the KIP-848 protocol leaves to the broker.

use super::{GroupProtocol, KafkaConfig};

/// Client settings tidemill owns: overriding them would break its guarantees.
/// (`group.instance.id` and `group.protocol` have keys of their own.)
const RESERVED: &[&str] = &[
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "partition.assignment.strategy",
    "bootstrap.servers",
    "group.instance.id",
    "group.protocol",
];

/// Client settings the broker owns under `group_protocol = "consumer"`
/// (librdkafka refuses them there).
const BROKER_OWNED: &[&str] = &["session.timeout.ms", "heartbeat.interval.ms"];

/// `inherited`: the top-level `instance_id`, checked under its own key.
pub(super) fn membership(
    name: &str,
    k: &KafkaConfig,
    inherited: Option<&str>,
    push: &mut impl FnMut(String, String),
) {
    let key = |k: &str| format!("pipelines.{name}.kafka.{k}");
    for option in k.options.keys() {
        let message = match option.as_str() {
            // Earlier configs set it here; that still works, alone.
            "group.instance.id" if k.group_instance_id.is_none() => continue,
            "group.instance.id" => {
                "is set twice: keep kafka.group_instance_id and remove this one".to_string()
            }
            "group.protocol" => "is set by tidemill: use kafka.group_protocol".to_string(),
            o if RESERVED.contains(&o) => {
                "is set by tidemill itself and cannot be overridden".to_string()
            }
            o if k.group_protocol == GroupProtocol::Consumer && BROKER_OWNED.contains(&o) => {
                "the broker owns this with group_protocol = \"consumer\" (set group.consumer.* on the broker)".to_string()
            }
            _ => continue,
        };
        push(key(&format!("options.{option}")), message);
    }
    if k.group_protocol == GroupProtocol::Consumer && k.session_timeout.is_some() {
        push(
            key("session_timeout"),
            "the broker owns the session timeout with group_protocol = \"consumer\" (its group.consumer.session.timeout.ms); remove this key".into(),
        );
    }
    if let Some(id) = k
        .group_instance_id
        .as_deref()
        .filter(|id| Some(*id) != inherited)
    {
        if let Some(problem) = instance_id_problem(id) {
            push(key("group_instance_id"), problem);
        }
    }
}

/// Kafka's rule for ids (as for topic names): 1-249 of `a-zA-Z0-9._-`.
pub(super) fn instance_id_problem(id: &str) -> Option<String> {
    if id.is_empty() || id.len() > 249 {
        return Some("must be 1 to 249 characters".into());
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "`{id}` contains {bad:?}; use a-z, A-Z, 0-9, '.', '_' and '-' (a Kubernetes pod name fits)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn problems(k: &KafkaConfig) -> Vec<(String, String)> {
        let mut out = Vec::new();
        membership("p", k, None, &mut |key, message| out.push((key, message)));
        out
    }

    fn kafka() -> KafkaConfig {
        KafkaConfig {
            brokers: "b:9092".into(),
            auto_offset_reset: "earliest".into(),
            session_timeout: None,
            group_instance_id: None,
            group_protocol: GroupProtocol::Classic,
            options: Default::default(),
        }
    }

    #[test]
    fn a_pod_name_is_a_valid_instance_id_and_a_blank_or_odd_one_is_not() {
        let mut k = kafka();
        k.group_instance_id = Some("tidemill-0".into());
        assert!(problems(&k).is_empty());
        for bad in ["", "tm 0", "tm/0"] {
            k.group_instance_id = Some(bad.into());
            let found = problems(&k);
            assert_eq!(found.len(), 1, "{bad:?}");
            assert_eq!(found[0].0, "pipelines.p.kafka.group_instance_id");
        }
    }

    #[test]
    fn the_consumer_protocol_refuses_what_the_broker_owns_naming_the_key() {
        let mut k = kafka();
        k.group_protocol = GroupProtocol::Consumer;
        k.session_timeout = Some(std::time::Duration::from_secs(6));
        k.options
            .insert("heartbeat.interval.ms".into(), Secret::new("1000"));
        let found = problems(&k);
        let keys: Vec<&str> = found.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "pipelines.p.kafka.options.heartbeat.interval.ms",
                "pipelines.p.kafka.session_timeout"
            ]
        );
        assert!(found[1].1.contains("broker owns"), "{}", found[1].1);
        // The classic protocol takes both.
        k.group_protocol = GroupProtocol::Classic;
        assert!(problems(&k).is_empty());
    }

    #[test]
    fn membership_settings_go_through_their_own_keys_not_options() {
        let mut k = kafka();
        k.options
            .insert("group.instance.id".into(), Secret::new("tm-0"));
        assert!(
            problems(&k).is_empty(),
            "an earlier config's option still works"
        );
        k.group_instance_id = Some("tm-0".into());
        k.options
            .insert("group.protocol".into(), Secret::new("consumer"));
        let found = problems(&k);
        assert!(found[0].1.contains("kafka.group_instance_id"), "{found:?}");
        assert!(found[1].1.contains("kafka.group_protocol"), "{found:?}");
    }
}
