use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_node_service_routes_answer_201_with_the_id_then_409() {
    let app = spawn_app().await;
    let body = json!({"name": "Иван", "phone": "8 916 123 45 67"});
    let created = app.post("/contacts/create", &body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_i64().expect("id");
    assert_eq!(
        created.body.as_object().map(|o| o.len()),
        Some(1),
        "only the id: {}",
        created.body
    );

    let conflict = app.post("/contacts/create", &body).await;
    assert_eq!(
        (conflict.status, conflict.problem_code()),
        (409, "already_exists".to_owned())
    );
    assert_eq!(conflict.body["id"].as_i64(), Some(id));

    let lead = json!({"name": "Заказ", "contact_id": id});
    let created = app.post("/leads/create", &lead).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let conflict = app.post("/leads/create", &lead).await;
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.body["id"], created.body["id"]);

    let invalid = app.post("/contacts/create", &json!({"name": "Иван"})).await;
    assert_eq!(invalid.wrong_fields(), ["phone"]);
}
