//! The campaign view and its outbox on a real PostgreSQL and on SQLite: Idempotency-Key,
//! final states, one event per saga, listing and paging.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use orchestrator::sagas::crear_campana::vista::{
    Creada, Estado, FiltroCampanas, Final, Listado, PgVista, SqliteVista, Vista,
};
use orchestrator::sagas::crear_campana::CrearCampana;
use saga_core::log::sql::{create_database, pg_pool, sqlite_pool};
use saga_core::SagaId;
use schemas::{Centavos, Evento, EventoCampana, Marca};
use serde_json::json;
use uuid::Uuid;

async fn postgres() -> Arc<dyn Vista> {
    let admin = std::env::var("SAGA_TEST_DATABASE_URL")
        .expect("SAGA_TEST_DATABASE_URL is not set: run scripts/test.sh, which installs and starts PostgreSQL");
    let url = create_database(&admin, "vista_test").await.expect("create a database on PostgreSQL");
    let pool = pg_pool(&url, 5).await.unwrap();
    Arc::new(PgVista::new(pool).await.unwrap())
}

async fn sqlite() -> Arc<dyn Vista> {
    let path = std::env::temp_dir().join(format!("vista-test-{}.sqlite", Uuid::new_v4().simple()));
    Arc::new(SqliteVista::new(sqlite_pool(&format!("sqlite://{}", path.display())).await.unwrap()).await.unwrap())
}

fn campana() -> CrearCampana {
    CrearCampana {
        id_campana: Uuid::now_v7(),
        nombre: "Campaña ñ".into(),
        descripcion: String::new(),
        tipo: "influencer".into(),
        fecha_inicio: "2025-01-01T00:00:00".parse().unwrap(),
        fecha_fin: "2025-02-01T00:00:00".parse().unwrap(),
        presupuesto_centavos: Centavos(100),
        marca: Marca { id_marca: Uuid::now_v7(), nombre_marca: "Nike".into() },
        influencers: vec![],
    }
}

fn rechazo(c: &CrearCampana, saga: SagaId) -> EventoCampana {
    EventoCampana {
        id_evento: Uuid::new_v4(),
        saga_id: saga.0,
        message_type: "CampanaRechazada".into(),
        evento: Evento::CampanaRechazada(schemas::CampanaRechazada {
            id_campana: c.id_campana,
            solicitud: schemas::SolicitudCampana {
                nombre: c.nombre.clone(),
                descripcion: c.descripcion.clone(),
                tipo: c.tipo.clone(),
                fecha_inicio: c.fecha_inicio,
                fecha_fin: c.fecha_fin,
                presupuesto_centavos: c.presupuesto_centavos,
                marca: c.marca.clone(),
                influencers: vec![],
            },
            paso_fallido: "reservar_presupuesto".into(),
            codigo: "MARCA_DESCONOCIDA".into(),
            motivo: "no existe".into(),
            ocurrido_en: chrono::Utc::now(),
        }),
    }
}

fn estado(estado: Option<Estado>) -> FiltroCampanas {
    FiltroCampanas { estado, ..Default::default() }
}

async fn contract(v: Arc<dyn Vista>) {
    // Idempotency-Key: the second creation returns the first campaign and records nothing.
    let first = campana();
    let saga = SagaId::new();
    let Creada::Nueva(created) = v.crear(&first, saga, Some("k")).await.unwrap() else { panic!("new") };
    assert_eq!(created.estado, Estado::Pendiente);
    assert_eq!(created.solicitud, first);
    let Creada::Existente(again) = v.crear(&campana(), SagaId::new(), Some("k")).await.unwrap() else {
        panic!("existing")
    };
    assert_eq!(again.id_campana, first.id_campana);
    assert_eq!(v.listar(&estado(None), 50, 0).await.unwrap().campanas.len(), 1);

    // Final state and its event, in one transaction; a second end changes nothing.
    let fin = Final::Rechazada {
        codigo: "MARCA_DESCONOCIDA".into(),
        motivo: "no existe".into(),
        paso: Some("reservar_presupuesto".into()),
    };
    let evento = rechazo(&first, saga);
    assert!(v.terminar(saga, &fin, Some(&evento)).await.unwrap());
    assert!(!v.terminar(saga, &Final::Activa(json!({})), Some(&rechazo(&first, saga))).await.unwrap());
    let c = v.obtener(first.id_campana).await.unwrap().unwrap();
    assert_eq!(
        (c.estado, c.codigo.as_deref(), c.paso_fallido.as_deref()),
        (Estado::Rechazada, Some("MARCA_DESCONOCIDA"), Some("reservar_presupuesto"))
    );
    let pending = v.eventos_pendientes(10).await.unwrap();
    assert_eq!(pending, vec![evento.clone()], "one event per saga");
    v.marcar_publicado(evento.id_evento, chrono::Utc::now()).await.unwrap();
    assert!(v.eventos_pendientes(10).await.unwrap().is_empty());
    assert!(v.evento_de(saga).await.unwrap().unwrap().1.is_some());

    // Listing and paging.
    for _ in 0..3 {
        v.crear(&campana(), SagaId::new(), None).await.unwrap();
    }
    let page = |l: Listado| (l.campanas.len(), l.total);
    assert_eq!(page(v.listar(&estado(Some(Estado::Pendiente)), 50, 0).await.unwrap()), (3, 3));
    assert_eq!(page(v.listar(&estado(Some(Estado::Rechazada)), 50, 0).await.unwrap()), (1, 1));
    // `total` counts every match, not the page: 4 campaigns, pages of 3.
    assert_eq!(page(v.listar(&estado(None), 3, 0).await.unwrap()), (3, 4));
    assert_eq!(page(v.listar(&estado(None), 3, 3).await.unwrap()), (1, 4));
    assert_eq!(page(v.listar(&estado(None), 3, 9).await.unwrap()), (0, 4));
    assert_eq!(page(v.listar(&estado(Some(Estado::Pendiente)), 2, 2).await.unwrap()), (1, 3));
    // The catch-up walks every pending campaign with a cursor, whatever the page size: pages of
    // two reach all three, each once, oldest first.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = v.pendientes(after, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.creada_en, last.id_campana));
        seen.extend(page.iter().map(|c| c.id_campana));
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    let distinct: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), 3);
    assert_eq!(v.pendientes(None, 10).await.unwrap().len(), 3);
    assert!(v.obtener(Uuid::now_v7()).await.unwrap().is_none());

    // Search by name (a part, any case, `%` and `_` taken literally) and by influencer (the
    // whole name, any case), in SQL.
    let mut verano = campana();
    verano.nombre = "Verano 100% Nike_".into();
    verano.influencers = vec![schemas::Influencer {
        nombre: "Ana García".into(),
        plataforma: "Instagram".into(),
        seguidores: 150_000,
        categoria: "Fitness".into(),
    }];
    v.crear(&verano, SagaId::new(), None).await.unwrap();
    let buscar = |b: &str| FiltroCampanas { buscar: Some(b.into()), ..Default::default() };
    let de = |i: &str| FiltroCampanas { influencer: Some(i.into()), ..Default::default() };
    let ids = |l: Listado| l.campanas.iter().map(|c| c.id_campana).collect::<Vec<_>>();
    assert_eq!(ids(v.listar(&buscar("VERANO"), 50, 0).await.unwrap()), vec![verano.id_campana]);
    assert_eq!(ids(v.listar(&buscar("100%"), 50, 0).await.unwrap()), vec![verano.id_campana]);
    assert_eq!(v.listar(&buscar("0%_"), 50, 0).await.unwrap().total, 0, "% and _ are literal");
    assert_eq!(v.listar(&buscar("CAMPAÑA"), 50, 0).await.unwrap().total, 4);
    assert_eq!(ids(v.listar(&de("ana garcía"), 50, 0).await.unwrap()), vec![verano.id_campana]);
    assert_eq!(v.listar(&de("Ana"), 50, 0).await.unwrap().total, 0, "the whole name");
    let both = FiltroCampanas { estado: Some(Estado::Activa), influencer: Some("Ana García".into()), buscar: None };
    assert_eq!(v.listar(&both, 50, 0).await.unwrap().total, 0);
}

#[tokio::test]
async fn the_view_contract_holds_on_postgres() {
    contract(postgres().await).await
}

#[tokio::test]
async fn the_view_contract_holds_on_sqlite() {
    contract(sqlite().await).await
}
