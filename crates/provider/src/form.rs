//! Stripe's request encoding: `application/x-www-form-urlencoded` with nested keys in
//! brackets (`line_items[0][price_data][currency]=usd`, `metadata[pb_order]=order_…`).

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn new() -> Form {
        Form(Vec::new())
    }

    pub fn push(&mut self, key: impl Into<String>, value: impl ToString) -> &mut Form {
        self.0.push((key.into(), value.to_string()));
        self
    }

    pub fn push_opt(&mut self, key: impl Into<String>, value: Option<impl ToString>) -> &mut Form {
        if let Some(v) = value {
            self.push(key, v);
        }
        self
    }

    /// `prefix[k]=v` for each entry (metadata).
    pub fn push_map<'a>(
        &mut self,
        prefix: &str,
        map: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> &mut Form {
        for (k, v) in map {
            self.push(format!("{prefix}[{k}]"), v);
        }
        self
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn encode(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            s.append_pair(k, v);
        }
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_keys_are_bracketed_and_escaped() {
        let mut f = Form::new();
        f.push("line_items[0][price_data][currency]", "usd")
            .push("line_items[0][quantity]", 2)
            .push_opt("customer", None::<String>);
        let m: std::collections::BTreeMap<String, String> =
            [("pb_order".to_string(), "order_1 &x".to_string())].into();
        f.push_map("metadata", &m);
        assert_eq!(
            f.encode(),
            "line_items%5B0%5D%5Bprice_data%5D%5Bcurrency%5D=usd&line_items%5B0%5D%5Bquantity%5D=2&metadata%5Bpb_order%5D=order_1+%26x"
        );
        assert_eq!(f.get("line_items[0][quantity]"), Some("2"));
    }
}
