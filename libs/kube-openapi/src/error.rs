//! The errors a self-check of the generated documents can find.

/// A defect in a generated document. The documents are built from static
/// types, so any of these is a bug in this crate, found by [`crate::check`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `$ref` points at a definition the document does not contain.
    #[error("{document}: $ref {reference} does not resolve")]
    DanglingRef { document: String, reference: String },

    /// A served kind's schema lacks `x-kubernetes-group-version-kind`.
    #[error("{document}: definition {definition} has no x-kubernetes-group-version-kind")]
    MissingGroupVersionKind {
        document: String,
        definition: String,
    },

    /// A PATCH operation does not advertise the `fieldValidation` query
    /// parameter; kubectl's `--validate=strict` probe would then fail.
    #[error("{document}: PATCH {path} does not advertise fieldValidation")]
    PatchWithoutFieldValidation { document: String, path: String },

    /// A definition that kubectl shows through `explain` has no description.
    #[error("{document}: {definition}.{field} has no description")]
    MissingDescription {
        document: String,
        definition: String,
        field: String,
    },

    /// A group-version the index advertises has no document.
    #[error("group-version {0} is advertised but has no document")]
    MissingGroupVersion(String),
}
