use axum::response::IntoResponse as _;
use capstan_server::{http::ApiError, secrets::SecretError};
use capstan_testkit::TestCluster;
use sqlx::{Acquire as _, Row as _};
use uuid::Uuid;

use super::connect;

#[tokio::test]
async fn sealed_values_open_to_what_was_sealed_and_carry_the_active_key_version() {
    let cluster = TestCluster::start(1).await;
    let secrets = &cluster.node(0).secrets;
    let mut conn = connect(&cluster.db.url).await;
    let values = [
        "p@ssw0rd",
        "",
        "ünïcødé ✓ and\nnewlines",
        &"x".repeat(64 * 1024),
    ];
    let mut ids = Vec::new();
    for value in values {
        ids.push(secrets.seal(&mut conn, value).await.unwrap());
    }
    let opened = secrets.open_many(&mut conn, &ids).await.unwrap();
    assert_eq!(opened.len(), values.len());
    for (id, value) in ids.iter().zip(values) {
        assert_eq!(opened[id], value);
    }
    let rows = sqlx::query("SELECT key_version, length(nonce) AS nonce_len FROM secrets")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), values.len());
    for row in rows {
        assert_eq!(row.get::<i32, _>("key_version"), 1);
        assert_eq!(row.get::<i32, _>("nonce_len"), 12);
    }
    // Another node of the cluster opens them too: the key is the cluster's, not the node's.
    let other = super::start_with_keys(
        &cluster.db.url,
        &cluster.blob_dir.0,
        "node-2",
        Some(super::KEY_1),
        &[],
    )
    .await;
    assert_eq!(
        other.secrets.open_many(&mut conn, &ids).await.unwrap(),
        opened
    );
}

#[tokio::test]
async fn equal_plaintexts_get_different_nonces_and_ciphertexts() {
    let cluster = TestCluster::start(1).await;
    let secrets = &cluster.node(0).secrets;
    let mut conn = connect(&cluster.db.url).await;
    let a = secrets.seal(&mut conn, "same value").await.unwrap();
    let b = secrets.seal(&mut conn, "same value").await.unwrap();
    assert_ne!(a, b);
    let rows: Vec<(Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT nonce, ciphertext FROM secrets WHERE id = ANY($1)")
            .bind([a, b])
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2);
    assert_ne!(rows[0].0, rows[1].0, "nonces must differ");
    assert_ne!(rows[0].1, rows[1].1, "ciphertexts must differ");
}

#[tokio::test]
async fn a_ciphertext_copied_into_another_row_does_not_open_there() {
    let cluster = TestCluster::start(1).await;
    let secrets = &cluster.node(0).secrets;
    let mut conn = connect(&cluster.db.url).await;
    let original = secrets
        .seal(&mut conn, "the production password")
        .await
        .unwrap();
    let victim = secrets.seal(&mut conn, "something harmless").await.unwrap();
    sqlx::query(
        "UPDATE secrets v SET nonce = o.nonce, ciphertext = o.ciphertext
         FROM secrets o WHERE o.id = $1 AND v.id = $2",
    )
    .bind(original)
    .bind(victim)
    .execute(&mut conn)
    .await
    .unwrap();
    let err = secrets.open_many(&mut conn, &[victim]).await.unwrap_err();
    assert!(
        matches!(err, SecretError::Undecryptable { id, version: 1 } if id == victim),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&victim.to_string()) && text.contains("copied from another row"),
        "{text}"
    );
    assert!(
        !text.contains("password") && !text.contains("harmless"),
        "{text}"
    );
    // The original still opens in its own row.
    let opened = secrets.open_many(&mut conn, &[original]).await.unwrap();
    assert_eq!(opened[&original], "the production password");
}

#[tokio::test]
async fn a_tampered_ciphertext_or_nonce_does_not_open() {
    let cluster = TestCluster::start(1).await;
    let secrets = &cluster.node(0).secrets;
    let mut conn = connect(&cluster.db.url).await;
    for column in ["ciphertext", "nonce"] {
        let id = secrets.seal(&mut conn, "hunter2").await.unwrap();
        sqlx::query(&format!(
            "UPDATE secrets SET {column} = set_byte({column}, 3, get_byte({column}, 3) # 1)
             WHERE id = $1"
        ))
        .bind(id)
        .execute(&mut conn)
        .await
        .unwrap();
        let err = secrets.open_many(&mut conn, &[id]).await.unwrap_err();
        assert!(
            matches!(err, SecretError::Undecryptable { .. }),
            "{column}: {err:?}"
        );
        assert!(err.to_string().contains("does not decrypt"), "{err}");
        // As an API error it is a 500 that says nothing of the value.
        let response = ApiError::from(err).into_response();
        assert_eq!(response.status(), 500);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(!body.contains("hunter2"), "{body}");
    }
}

#[tokio::test]
async fn missing_ids_are_an_error_that_names_them() {
    let cluster = TestCluster::start(1).await;
    let secrets = &cluster.node(0).secrets;
    let mut conn = connect(&cluster.db.url).await;
    let present = secrets.seal(&mut conn, "here").await.unwrap();
    let absent = Uuid::now_v7();
    let err = secrets
        .open_many(&mut conn, &[present, absent, absent])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SecretError::Missing { ids } if ids == &[absent]),
        "{err:?}"
    );
    assert!(err.to_string().contains(&absent.to_string()), "{err}");
    assert!(secrets.open_many(&mut conn, &[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_database_never_holds_a_plaintext() {
    let cluster = TestCluster::start(1).await;
    let secrets = &cluster.node(0).secrets;
    let mut conn = connect(&cluster.db.url).await;
    let plaintext = "pl41nt3xt-that-must-never-be-stored";
    let id = secrets.seal(&mut conn, plaintext).await.unwrap();
    assert_eq!(
        secrets.open_many(&mut conn, &[id]).await.unwrap()[&id],
        plaintext
    );

    let whole_rows: Vec<String> = sqlx::query_scalar("SELECT t::text FROM secrets t")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(whole_rows.len(), 1);
    assert!(!whole_rows[0].contains(plaintext), "{}", whole_rows[0]);

    // Nor does any other column of any table, as text or as bytes.
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text
         FROM information_schema.columns
         WHERE table_schema = 'public'
           AND data_type IN ('text', 'character varying', 'json', 'jsonb', 'bytea', 'ARRAY')",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(
        columns
            .iter()
            .any(|(t, c, _)| t == "secrets" && c == "ciphertext")
    );
    for (table, column, data_type) in &columns {
        let sql = if data_type == "bytea" {
            format!(
                "SELECT EXISTS (SELECT 1 FROM \"{table}\"
                                WHERE position(convert_to($1, 'UTF8') IN \"{column}\") > 0)"
            )
        } else {
            format!(
                "SELECT EXISTS (SELECT 1 FROM \"{table}\"
                                WHERE strpos(\"{column}\"::text, $1) > 0)"
            )
        };
        let found: bool = sqlx::query_scalar(&sql)
            .bind(plaintext)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert!(!found, "{table}.{column} holds the plaintext");
    }
}

#[tokio::test]
async fn a_seal_joins_the_callers_transaction() {
    let cluster = TestCluster::start(1).await;
    let secrets = &cluster.node(0).secrets;
    let mut conn = connect(&cluster.db.url).await;

    let mut tx = conn.begin().await.unwrap();
    let kept = secrets.seal(&mut tx, "kept").await.unwrap();
    // Readable inside the transaction before it commits.
    let inner = tx.acquire().await.unwrap();
    assert_eq!(
        secrets.open_many(inner, &[kept]).await.unwrap()[&kept],
        "kept"
    );
    tx.commit().await.unwrap();

    let mut tx = conn.begin().await.unwrap();
    let dropped = secrets.seal(&mut tx, "rolled back").await.unwrap();
    tx.rollback().await.unwrap();

    let err = secrets
        .open_many(&mut conn, &[kept, dropped])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SecretError::Missing { ids } if ids == &[dropped]),
        "{err:?}"
    );
    assert_eq!(
        capstan_db::secrets::delete(&mut conn, &[kept, dropped])
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn without_a_master_key_sealing_is_refused_with_a_409_problem() {
    let cluster = TestCluster::start_with(&[None], |settings| settings.master_key = None).await;
    let node = cluster.node(0);
    let mut conn = connect(&cluster.db.url).await;

    let err = node.secrets.seal(&mut conn, "nope").await.unwrap_err();
    assert!(matches!(err, SecretError::NoMasterKey), "{err:?}");
    let err = node
        .secrets
        .open_many(&mut conn, &[Uuid::now_v7()])
        .await
        .unwrap_err();
    assert!(matches!(err, SecretError::NoMasterKey), "{err:?}");
    // Nothing to open needs no key.
    assert!(
        node.secrets
            .open_many(&mut conn, &[])
            .await
            .unwrap()
            .is_empty()
    );

    let response = ApiError::from(err).into_response();
    assert_eq!(response.status(), 409);
    assert_eq!(
        response.headers()["content-type"],
        capstan_api::PROBLEM_JSON
    );
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let problem: capstan_api::Problem = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem.status, 409);
    assert_eq!(
        problem.detail,
        "this cluster has no CAPSTAN_MASTER_KEY: sensitive values cannot be stored; set it on every node (see docs/security.md)"
    );

    // The cluster says so too: no version, and a node that holds none.
    let status = node.client().get_master_key().await.unwrap();
    assert_eq!(status.active_version, None);
    assert!(status.versions.is_empty());
    assert_eq!(status.nodes.len(), 1);
    assert!(status.nodes[0].key_versions.is_empty());
    let err = node.client().rotate_master_key().await.unwrap_err();
    assert!(
        err.to_string().contains("no master key is registered yet"),
        "{err}"
    );
}
