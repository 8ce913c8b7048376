//! The OpenAPI 3.1 document of the HTTP API, made from the code: the paths from [`super::ROUTES`] (what the
//! router is built from), the schemas from the burst.v1 file descriptors (what the canonical JSON mapping is
//! generated from), with the .proto comments as descriptions. The schemas say what the JSON parser takes: the
//! .proto field names, 64-bit integers as strings or numbers, a oneof's members mutually exclusive, no unknown
//! fields; every field optional, as in proto3.

use std::collections::HashMap;
use std::sync::OnceLock;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet, SourceCodeInfo};
use serde_json::{Map, Value, json};

use super::{In, Kind, Route, Shape};

/// The package every schema comes from.
const PACKAGE: &str = "burst.v1";

/// The document as served (built once).
pub fn document_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| document().to_string())
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in super::ROUTES {
        let entry = paths.entry(r.path).or_insert_with(|| json!({}));
        entry[r.method] = operation(r);
    }
    let mut schemas = message_schemas();
    refine(&mut schemas);
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "description": "Every refusal: the HTTP status, the gRPC status name, and why.",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "status", "message"],
                "properties": {
                    "code": {"type": "integer"},
                    "status": {"type": "string"},
                    "message": {"type": "string"},
                },
            }},
        }),
    );
    schemas.insert(
        "History".into(),
        json!({
            "type": "object",
            "required": ["sample_every_ms", "samples"],
            "properties": {
                "sample_every_ms": {"type": "integer", "minimum": 0},
                "samples": {"type": "array", "items": {
                    "type": "object",
                    "required": ["at_ms", "submitted", "finished"],
                    "properties": {
                        "at_ms": {"type": "integer", "minimum": 0},
                        "submitted": {"type": "integer", "minimum": 0},
                        "finished": {"type": "integer", "minimum": 0},
                    },
                }},
            },
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "burst controller HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Submit and follow jobs over HTTP. Bodies and answers are the canonical protobuf JSON \
                of the burst.v1 messages (field names as in the .proto files; 64-bit integers as strings). \
                Every call is the gRPC method of the same name, with the same authentication: \
                `Authorization: Bearer <token>`, or a client certificate over TLS.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}

/// A job or worker id, as `crate::validate::name` takes it (it also refuses `..` inside).
pub const NAME_PATTERN: &str = "^[A-Za-z0-9_-][A-Za-z0-9._/-]{0,252}$";

/// What the controller's validation requires besides the JSON's shape, where a schema can say it simply: ids are
/// names, a spec runs one kind of thing, a command or entry is not blank. (The rest — known pools, environment
/// names, sizes — is refused with a 400 naming it.)
fn refine(schemas: &mut Map<String, Value>) {
    // Through a Value, whose indexing inserts what is missing instead of panicking.
    let mut all = Value::Object(std::mem::take(schemas));
    let name = json!({"type": "string", "pattern": NAME_PATTERN});
    let not_blank = json!({"type": "string", "pattern": "\\S"});
    let one_of = |fields: &[&str]| Value::Array(fields.iter().map(|f| json!({"required": [f]})).collect());
    all["CancelJobRequest"]["properties"]["job_ids"]["items"] = name.clone();
    all["CordonWorkersRequest"]["properties"]["worker_ids"]["items"] = name;
    // Exactly one member of the oneof (in place of "at most one").
    for (message, members) in
        [("JobSpec", &["process", "python", "docker"]), ("PythonSpec", &["script", "module", "code"])]
    {
        if let Some(schema) = all[message].as_object_mut() {
            schema.remove("allOf");
            schema.insert("oneOf".into(), one_of(members));
        }
    }
    all["ProcessSpec"]["properties"]["command"] = not_blank.clone();
    all["ProcessSpec"]["required"] = json!(["command"]);
    for entry in ["script", "module", "code"] {
        all["PythonSpec"]["properties"][entry] = not_blank.clone();
    }
    if let Value::Object(refined) = all {
        *schemas = refined;
    }
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn operation(r: &Route) -> Value {
    let mut op = json!({"operationId": r.id, "summary": r.summary});
    if !r.public {
        // A controller without a tokens file or TLS asks no credentials.
        op["security"] = json!([{"bearer": []}, {}]);
    }
    let params: Vec<Value> = r.params.iter().map(parameter).collect();
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if let Some(body) = r.body {
        op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema_of(body)}}});
    }
    let mut responses = Map::new();
    let (code, shape) = r.ok;
    responses.insert(code.to_string(), answer(shape, "What was asked for."));
    if matches!(shape, Shape::Submitted) {
        // A created job can be read and cancelled by its id (a fuzzer follows these from submissions).
        let link = |op: &str| json!({"operationId": op, "parameters": {"id": "$response.body#/job_id"}});
        responses[&code.to_string()]["links"] = json!({"GetJob": link("getJob"), "CancelJob": link("cancelJob")});
        responses.insert("200".into(), answer(shape, "The job (or every job of the batch) already existed."));
    }
    if !r.probe && !r.public {
        let errors = [
            ("400", "The request is not valid."),
            ("401", "No, an unknown or an expired credential."),
            ("403", "The caller may not do this."),
            ("404", "No such job or worker."),
            ("409", "It conflicts with the state of a job (an idempotency key used for another spec)."),
            ("413", "The body is too large."),
            ("429", "Over the caller's submit rate or queued-job quota; Retry-After says when to try again."),
            ("503", "The controller cannot record it now (its store), or is shutting down."),
        ];
        for (code, why) in errors {
            responses.insert(
                code.into(),
                json!({"description": why, "content": {"application/json": {"schema": reference("Error")}}}),
            );
        }
    }
    if r.probe && r.id == "readyz" {
        responses.insert("503".into(), answer(Shape::Text, "Not ready, and why."));
    }
    op["responses"] = Value::Object(responses);
    op
}

fn answer(shape: Shape, description: &str) -> Value {
    let content = match shape {
        Shape::Text => json!({"text/plain": {"schema": {"type": "string"}}}),
        Shape::Metrics => json!({"application/openmetrics-text": {"schema": {"type": "string"}}}),
        Shape::Events => json!({"text/event-stream": {"schema": {"type": "string"}}}),
        other => json!({"application/json": {"schema": schema_of(other)}}),
    };
    json!({"description": description, "content": content})
}

fn schema_of(shape: Shape) -> Value {
    match shape {
        Shape::Message(name) => reference(name),
        Shape::Specs => json!({"oneOf": [
            reference("JobSpec"),
            {"type": "array", "items": reference("JobSpec"), "maxItems": crate::service::MAX_BATCH},
        ]}),
        Shape::Submitted => json!({"oneOf": [reference("SubmitJobResponse"), reference("SubmitJobsResponse")]}),
        Shape::History => reference("History"),
        Shape::Document => json!({"type": "object"}),
        Shape::Text | Shape::Events | Shape::Metrics => json!({"type": "string"}),
    }
}

fn parameter(p: &super::Param) -> Value {
    let one = match p.kind {
        Kind::Text => json!({"type": "string"}),
        Kind::Name => json!({"type": "string", "pattern": NAME_PATTERN}),
        Kind::Count(max) => json!({"type": "integer", "minimum": 0, "maximum": max}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::State => {
            // Every state a job can be in, by the names the CLI and `parse_state` use.
            let states = (1..).map_while(|i| burst_proto::v1::JobState::try_from(i).ok()).map(burst_proto::state_name);
            json!({"type": "string", "enum": states.collect::<Vec<_>>()})
        }
        Kind::Pair => json!({"type": "string", "pattern": "^[^=]+=.*$"}),
        Kind::Word(words) => json!({"type": "string", "enum": words}),
    };
    let schema = if p.repeated { json!({"type": "array", "items": one}) } else { one };
    let place = if p.place == In::Path { "path" } else { "query" };
    let mut v = json!({"name": p.name, "in": place, "description": p.doc, "schema": schema});
    if p.place == In::Path {
        v["required"] = json!(true);
    }
    if p.repeated {
        v["style"] = json!("form");
        v["explode"] = json!(true);
    }
    v
}

/// One schema per message and enum of [`PACKAGE`] (map entries are inlined).
fn message_schemas() -> Map<String, Value> {
    let set = FileDescriptorSet::decode(burst_proto::v1::FILE_DESCRIPTOR_SET).unwrap_or_default();
    let mut schemas = Map::new();
    for file in set.file.iter().filter(|f| f.package() == PACKAGE) {
        let comments = Comments::of(file.source_code_info.as_ref());
        for (i, m) in file.message_type.iter().enumerate() {
            add_message(&mut schemas, m, m.name(), &[4, i as i32], &comments);
        }
        for (i, e) in file.enum_type.iter().enumerate() {
            let mut schema = json!({"type": "string", "enum": e.value.iter().map(|v| v.name()).collect::<Vec<_>>()});
            comments.describe(&mut schema, &[5, i as i32]);
            schemas.insert(e.name().to_string(), schema);
        }
    }
    schemas
}

/// The leading comments of the .proto files, by descriptor path.
struct Comments(HashMap<Vec<i32>, String>);

impl Comments {
    fn of(info: Option<&SourceCodeInfo>) -> Comments {
        let located = info.map(|i| i.location.as_slice()).unwrap_or_default();
        let texts = located.iter().filter_map(|l| {
            let text = l.leading_comments().trim();
            (!text.is_empty()).then(|| (l.path.clone(), text.split_whitespace().collect::<Vec<_>>().join(" ")))
        });
        Comments(texts.collect())
    }

    fn describe(&self, schema: &mut Value, path: &[i32]) {
        if let Some(text) = self.0.get(path) {
            schema["description"] = json!(text);
        }
    }
}

fn add_message(schemas: &mut Map<String, Value>, m: &DescriptorProto, name: &str, path: &[i32], comments: &Comments) {
    if m.options.as_ref().is_some_and(|o| o.map_entry()) {
        return;
    }
    for (i, nested) in m.nested_type.iter().enumerate() {
        let nested_path = [path, &[3, i as i32]].concat();
        add_message(schemas, nested, &format!("{name}.{}", nested.name()), &nested_path, comments);
    }
    let maps: HashMap<&str, &DescriptorProto> = m
        .nested_type
        .iter()
        .filter(|n| n.options.as_ref().is_some_and(|o| o.map_entry()))
        .map(|n| (n.name(), n))
        .collect();
    let mut properties = Map::new();
    let mut oneofs: HashMap<i32, Vec<&str>> = HashMap::new();
    for (i, f) in m.field.iter().enumerate() {
        let entry = f.type_name().rsplit('.').next().and_then(|short| maps.get(short));
        let mut schema = match (f.label(), entry) {
            (Label::Repeated, Some(entry)) => {
                let value = entry.field.iter().find(|f| f.number() == 2).map(scalar).unwrap_or(json!({}));
                json!({"type": "object", "additionalProperties": value})
            }
            (Label::Repeated, None) => json!({"type": "array", "items": scalar(f)}),
            _ => scalar(f),
        };
        comments.describe(&mut schema, &[path, &[2, i as i32]].concat());
        properties.insert(f.name().to_string(), schema);
        if let Some(index) = f.oneof_index
            && !f.proto3_optional()
        {
            oneofs.entry(index).or_default().push(f.name());
        }
    }
    let mut schema = json!({"type": "object", "properties": properties, "additionalProperties": false});
    // At most one member of each oneof.
    let exclusive: Vec<Value> = oneofs
        .values()
        .flat_map(|members| {
            members
                .iter()
                .enumerate()
                .flat_map(move |(i, a)| members[i + 1..].iter().map(move |b| json!({"not": {"required": [a, b]}})))
        })
        .collect();
    if !exclusive.is_empty() {
        schema["allOf"] = Value::Array(exclusive);
    }
    comments.describe(&mut schema, path);
    schemas.insert(name.to_string(), schema);
}

/// The schema of one value of field `f` (not counting `repeated`).
fn scalar(f: &prost_types::FieldDescriptorProto) -> Value {
    // Integers may come as numbers or decimal strings; 64-bit ones go out as strings. The pattern bounds the
    // digits; a string of them past the type's range is refused with a 400.
    let int = |min: i128, max: i128, digits: &str| json!({"type": ["integer", "string"], "minimum": min, "maximum": max, "pattern": format!("^{digits}$")});
    match f.r#type() {
        Type::Double | Type::Float => json!({"type": "number"}),
        Type::Int64 | Type::Sint64 | Type::Sfixed64 => int(i64::MIN as i128, i64::MAX as i128, "-?[0-9]{1,19}"),
        Type::Uint64 | Type::Fixed64 => int(0, u64::MAX as i128, "[0-9]{1,20}"),
        Type::Int32 | Type::Sint32 | Type::Sfixed32 => int(i32::MIN as i128, i32::MAX as i128, "-?[0-9]{1,10}"),
        Type::Uint32 | Type::Fixed32 => int(0, u32::MAX as i128, "[0-9]{1,10}"),
        Type::Bool => json!({"type": "boolean"}),
        Type::String => json!({"type": "string"}),
        Type::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Type::Enum | Type::Message | Type::Group => {
            let name = f.type_name().trim_start_matches('.').trim_start_matches(PACKAGE).trim_start_matches('.');
            reference(name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_covers_every_route_and_every_referenced_schema_exists() {
        let doc = document();
        for r in super::super::ROUTES {
            assert!(doc["paths"][r.path][r.method].is_object(), "{} {} documented", r.method, r.path);
        }
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "{name} is referenced but not defined");
        }
        let spec = &schemas["JobSpec"];
        assert_eq!(spec["properties"]["timeout_ms"]["type"], json!(["integer", "string"]));
        assert_eq!(spec["properties"]["labels"]["additionalProperties"]["type"], "string");
        assert!(spec["description"].is_null() || spec["description"].is_string());
        assert!(spec["oneOf"].as_array().unwrap().contains(&json!({"required": ["process"]})), "one kind, exactly");
        let status = &schemas["JobStatus"]["properties"];
        assert_eq!(status["state"], reference("JobState"));
        assert!(status["exit_code"].is_object(), "optional fields are properties too");
        assert!(schemas["JobStatus"].get("allOf").is_none(), "proto3 optional is not a oneof");
        assert!(schemas["JobState"]["enum"].as_array().unwrap().contains(&json!("JOB_STATE_RUNNING")));
        let state = &doc["paths"]["/v1/jobs"]["get"]["parameters"][0]["schema"]["items"]["enum"];
        assert_eq!(state, &json!(["queued", "leased", "running", "succeeded", "failed", "cancelled"]));
        let submitted = &doc["paths"]["/v1/jobs"]["post"]["responses"];
        assert!(submitted["201"]["links"]["GetJob"].is_object() && submitted["200"].is_object());
        assert!(
            schemas["Attempt"]["properties"]["message"].is_object() && schemas.get("JobSpec.EnvEntry").is_none(),
            "map entries are inlined"
        );
    }
}
