//! The book's API reference (`docs/src/reference/api.md`), generated from the served SDL (the
//! same text as `schema/schema.graphql`) and its descriptions, so it cannot drift: the operation
//! roots first, then every other type by kind and name. The test `tests/api_reference.rs`
//! fails when the committed page differs.

use std::fmt::Write as _;

use async_graphql::parser::types::{
    FieldDefinition, InputValueDefinition, TypeDefinition, TypeKind, TypeSystemDefinition,
};
use async_graphql::parser::{Positioned, parse_schema};

/// How to regenerate the page (also printed at its top).
pub const REGENERATE: &str =
    "PROCTOR_UPDATE_DOCS=1 cargo nextest run -p proctor-schema --test api_reference";

/// `text` fit for one Markdown table cell (also the configuration reference's).
pub fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// Prose (a description or a help text) for one Markdown table cell or paragraph: as [`cell`],
/// and a `<` outside code spans becomes `&lt;`, so `DateTime<Utc>` or `Bearer <token>` is text
/// rather than an unclosed HTML tag (also the configuration reference's).
pub fn prose(text: &str) -> String {
    cell(text)
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 0 {
                part.replace('<', "&lt;")
            } else {
                part.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}

fn description(text: Option<&Positioned<String>>) -> String {
    text.map(|text| prose(&text.node)).unwrap_or_default()
}

/// `name(arg: Type = default, …)` of a field.
fn signature(field: &FieldDefinition) -> String {
    if field.arguments.is_empty() {
        return format!("`{}`", field.name.node);
    }
    let arguments: Vec<String> = field
        .arguments
        .iter()
        .map(|argument| input(&argument.node))
        .collect();
    format!("`{}({})`", field.name.node, arguments.join(", "))
}

fn input(value: &InputValueDefinition) -> String {
    match &value.default_value {
        Some(default) => format!("{}: {} = {}", value.name.node, value.ty.node, default.node),
        None => format!("{}: {}", value.name.node, value.ty.node),
    }
}

fn kind_name(kind: &TypeKind) -> &'static str {
    match kind {
        TypeKind::Scalar => "scalar",
        TypeKind::Object(_) => "object",
        TypeKind::Interface(_) => "interface",
        TypeKind::Union(_) => "union",
        TypeKind::Enum(_) => "enum",
        TypeKind::InputObject(_) => "input",
    }
}

fn section(definition: &TypeDefinition, out: &mut String) {
    let _ = write!(
        out,
        "\n## `{}` ({})\n",
        definition.name.node,
        kind_name(&definition.kind)
    );
    let text = description(definition.description.as_ref());
    if !text.is_empty() {
        let _ = write!(out, "\n{text}\n");
    }
    match &definition.kind {
        TypeKind::Object(object) => fields(&object.fields, out),
        TypeKind::Interface(interface) => fields(&interface.fields, out),
        TypeKind::InputObject(object) => {
            out.push_str("\n| Field | Description |\n|---|---|\n");
            for field in &object.fields {
                let _ = writeln!(
                    out,
                    "| `{}` | {} |",
                    cell(&input(&field.node)),
                    description(field.node.description.as_ref())
                );
            }
        }
        TypeKind::Enum(values) => {
            out.push_str("\n| Value | Description |\n|---|---|\n");
            for value in &values.values {
                let _ = writeln!(
                    out,
                    "| `{}` | {} |",
                    value.node.value.node,
                    description(value.node.description.as_ref())
                );
            }
        }
        TypeKind::Union(union) => {
            let members: Vec<String> = union
                .members
                .iter()
                .map(|member| format!("`{}`", member.node))
                .collect();
            let _ = write!(out, "\nOne of {}.\n", members.join(", "));
        }
        TypeKind::Scalar => {}
    }
}

fn fields(fields: &[Positioned<FieldDefinition>], out: &mut String) {
    out.push_str("\n| Field | Type | Description |\n|---|---|---|\n");
    for field in fields {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} |",
            cell(&signature(&field.node)),
            field.node.ty.node,
            description(field.node.description.as_ref())
        );
    }
}

/// The page for `sdl`.
///
/// # Panics
/// When `sdl` is not a GraphQL schema (it is the server's own, printed by async-graphql).
pub fn api(sdl: &str) -> String {
    let document = parse_schema(sdl).expect("the served SDL parses");
    let mut types: Vec<&TypeDefinition> = document
        .definitions
        .iter()
        .filter_map(|definition| match definition {
            TypeSystemDefinition::Type(definition) => Some(&definition.node),
            _ => None,
        })
        .collect();
    // The operation roots as the `schema { … }` block names them.
    let roots: Vec<String> = document
        .definitions
        .iter()
        .find_map(|definition| match definition {
            TypeSystemDefinition::Schema(schema) => Some(
                [
                    &schema.node.query,
                    &schema.node.mutation,
                    &schema.node.subscription,
                ]
                .into_iter()
                .flatten()
                .map(|name| name.node.to_string())
                .collect(),
            ),
            _ => None,
        })
        .unwrap_or_else(|| {
            vec![
                "Query".to_owned(),
                "Mutation".to_owned(),
                "Subscription".to_owned(),
            ]
        });
    let rank = |definition: &TypeDefinition| {
        let name = definition.name.node.as_str();
        match roots.iter().position(|root| *root == name) {
            Some(position) => (0, position, String::new()),
            None => (1, 0, name.to_owned()),
        }
    };
    types.sort_by_key(|definition| rank(definition));
    let mut out = format!(
        "# API reference\n\nGenerated from `schema/schema.graphql` by `{REGENERATE}`; do not \
         edit. The GraphQL endpoint is `POST /graphql` (JSON), subscriptions are on \
         `/graphql/ws` (graphql-transport-ws); see [The GraphQL API](../graphql.md).\n"
    );
    for definition in types {
        section(definition, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::prose;

    #[test]
    fn prose_escapes_angle_brackets_outside_code_only() {
        assert_eq!(
            prose("A DateTime<Utc>, `Vec<u8>` and a | bar\n  split"),
            "A DateTime&lt;Utc>, `Vec<u8>` and a \\| bar split"
        );
    }
}
