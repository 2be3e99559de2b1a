//! PLACEHOLDER: replaced by the serde Deserializer over yaml::Node.
