//! Attribute schemas: what Terraform is told (`GetProviderSchema`) and what
//! the generic planning in `framework` needs to know (computed, ForceNew).

use crate::tfplugin6 as tf;
use crate::value::{Obj, Type, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Required,
    Optional,
    /// Set by the provider only.
    Computed,
    /// The user may set it; otherwise the provider does.
    OptionalComputed,
}

#[derive(Clone, Debug)]
pub struct Attr {
    pub name: &'static str,
    pub ty: Type,
    pub mode: Mode,
    pub sensitive: bool,
    /// Changing it replaces the object (the API cannot update it in place).
    pub force_new: bool,
    pub description: &'static str,
}

impl Attr {
    fn new(name: &'static str, ty: Type, mode: Mode, description: &'static str) -> Attr {
        Attr {
            name,
            ty,
            mode,
            sensitive: false,
            force_new: false,
            description,
        }
    }

    pub fn required(name: &'static str, ty: Type, description: &'static str) -> Attr {
        Attr::new(name, ty, Mode::Required, description)
    }

    pub fn optional(name: &'static str, ty: Type, description: &'static str) -> Attr {
        Attr::new(name, ty, Mode::Optional, description)
    }

    pub fn computed(name: &'static str, ty: Type, description: &'static str) -> Attr {
        Attr::new(name, ty, Mode::Computed, description)
    }

    pub fn optional_computed(name: &'static str, ty: Type, description: &'static str) -> Attr {
        Attr::new(name, ty, Mode::OptionalComputed, description)
    }

    pub fn force_new(mut self) -> Attr {
        self.force_new = true;
        self
    }

    pub fn sensitive(mut self) -> Attr {
        self.sensitive = true;
        self
    }

    pub fn is_computed(&self) -> bool {
        matches!(self.mode, Mode::Computed | Mode::OptionalComputed)
    }
}

#[derive(Clone, Debug)]
pub struct Schema {
    pub version: i64,
    pub description: &'static str,
    pub attrs: Vec<Attr>,
}

impl Schema {
    pub fn new(description: &'static str, attrs: Vec<Attr>) -> Schema {
        Schema {
            version: 0,
            description,
            attrs,
        }
    }

    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// Exactly the schema's attributes: missing ones null, unknown names dropped.
    pub fn conform(&self, mut obj: Obj) -> Obj {
        self.attrs
            .iter()
            .map(|a| (a.name.to_owned(), obj.remove(a.name).unwrap_or(Value::Null)))
            .collect()
    }

    pub fn to_proto(&self) -> tf::Schema {
        tf::Schema {
            version: self.version,
            block: Some(tf::schema::Block {
                version: self.version,
                attributes: self
                    .attrs
                    .iter()
                    .map(|a| tf::schema::Attribute {
                        name: a.name.to_owned(),
                        r#type: a.ty.to_json().to_string().into_bytes(),
                        description: a.description.to_owned(),
                        required: a.mode == Mode::Required,
                        optional: matches!(a.mode, Mode::Optional | Mode::OptionalComputed),
                        computed: a.is_computed(),
                        sensitive: a.sensitive,
                        description_kind: tf::StringKind::Plain as i32,
                        deprecated: false,
                    })
                    .collect(),
                block_types: Vec::new(),
                description: self.description.to_owned(),
                description_kind: tf::StringKind::Plain as i32,
                deprecated: false,
            }),
        }
    }
}
