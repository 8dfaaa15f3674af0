//! The REST API's route table: every route is one [`Route`] (method, path template, handler),
//! each resource module lists its own, and the router is built from the table alone, so the
//! OpenAPI test can check the document against every route actually served.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{self, MethodRouter};
use axum::Router;

use crate::app::App;

/// One method on one path, served by one handler; optionally also at alias paths (a
/// trailing-slash spelling), which are served but not documented.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub aliases: &'static [&'static str],
    handler: MethodRouter<App>,
}

impl Route {
    pub fn get<H: Handler<T, App>, T: 'static>(path: &'static str, handler: H) -> Route {
        Route::new(Method::GET, path, routing::get(handler))
    }

    pub fn post<H: Handler<T, App>, T: 'static>(path: &'static str, handler: H) -> Route {
        Route::new(Method::POST, path, routing::post(handler))
    }

    pub fn put<H: Handler<T, App>, T: 'static>(path: &'static str, handler: H) -> Route {
        Route::new(Method::PUT, path, routing::put(handler))
    }

    pub fn delete<H: Handler<T, App>, T: 'static>(path: &'static str, handler: H) -> Route {
        Route::new(Method::DELETE, path, routing::delete(handler))
    }

    fn new(method: Method, path: &'static str, handler: MethodRouter<App>) -> Route {
        Route {
            method,
            path,
            aliases: &[],
            handler,
        }
    }

    /// Also serves the route at `aliases`.
    pub fn also_at(self, aliases: &'static [&'static str]) -> Route {
        Route { aliases, ..self }
    }

    /// Adds the route (and its aliases) to `router`; methods on one path merge.
    pub fn add_to(self, router: Router<App>) -> Router<App> {
        self.aliases.iter().fold(
            router.route(self.path, self.handler.clone()),
            |router, alias| router.route(alias, self.handler.clone()),
        )
    }
}
