//! `POST /v1/admin/contracts/{id}/test`: the operator's debugger for a new buyer. The contract's
//! RTB call or delivery is rendered for a lead the operator gives, exactly as it would be sent
//! (header values masked), and sent only when asked, marked as a test; the answer shows the
//! buyer's status, headers and body and how the contract's rules read them. Nothing is
//! reserved, charged or recorded.

use std::str::FromStr;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::headers::mask;
use super::input::{Input, read_money};
use super::parse_id;
use crate::api::Problem;
use crate::api::extract::{AdminTenant, JsonObject};
use crate::api::partner::{lead_problem, parse_sub_ids};
use crate::app::AppState;
use crate::auction::{Pricing, SaleType, validate_ping, validate_post};
use crate::buyers::trial::{self, Reading, ShownAnswer, TrialCall, TrialInput};
use crate::integration::{CallNames, Named};
use crate::money::Money;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(test_contract))
}

const KEYS: &[&str] = &[
    "call",
    "lead",
    "consent",
    "send",
    "sale_type",
    "price",
    "rtb_ref",
    "sub_ids",
    "campaign_id",
];

/// The request as sent (or as it would be): header values masked.
#[derive(Serialize, ToSchema)]
pub struct TrialRequest {
    method: String,
    url: String,
    /// `[name, value]` pairs in the order sent; values masked except the body's type and the
    /// test marker.
    #[schema(value_type = Vec<Vec<String>>)]
    headers: Vec<(String, String)>,
    body: Option<String>,
}

/// What the test found.
#[derive(Serialize, ToSchema)]
pub struct TrialReport {
    /// `rtb` or `delivery`.
    call: &'static str,
    /// The request, absent when it could not be rendered for this lead (`render_error`).
    request: Option<TrialRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    render_error: Option<String>,
    /// Microseconds spent rendering the request.
    render_us: u64,
    /// Whether the request was sent to the buyer.
    sent: bool,
    /// The buyer's answer: `status`, `headers`, `body` (at most 4 KB), `body_truncated`.
    #[schema(value_type = Option<Object>)]
    answer: Option<ShownAnswer>,
    /// Milliseconds from sending to the whole answer read (or the failure).
    call_ms: Option<u64>,
    /// How the contract's rules read the answer: `outcome` (`accepted`, `duplicate`,
    /// `rejected`, `failed`; or `bid`, `rtb_no_bid`, `rtb_invalid`, `rtb_error`,
    /// `rtb_timeout`), `reason`, and for a bid `exclusive_bid`, `shared_bid`, `ref`.
    #[schema(value_type = Option<Object>)]
    reading: Option<Reading>,
}

/// Renders the contract's RTB call or delivery for a lead and, with `"send": true`, sends it to
/// the buyer marked as a test (`"test": true` in the body's context and the header
/// `Gavel-Test: true`), answering what the buyer said and how the contract's rules read it.
/// Nothing is reserved, charged or recorded. An RTB call's lead is checked as a ping's (no
/// PII), a delivery's as a post's.
#[utoipa::path(post, path = "/v1/admin/contracts/{id}/test", tag = "contracts",
    params(("id" = Uuid, Path)),
    request_body(content = Object, description = "`call` (`rtb` or `delivery`), `lead`, and \
        optionally `consent`, `send` (default false), `sale_type`, `price` and `rtb_ref` (what \
        the delivery says of the sale; default: the offer's first sale type and the contract's \
        price for it), `sub_ids`, `campaign_id` (whose campaign and partner the context names)",
        example = json!({"call": "delivery", "send": false,
            "lead": {"state": "TX", "zip": "75001", "first_name": "Ada", "email": "ada@example.com",
                     "phone": "2145550123"},
            "consent": {"trustedform_cert_url": "https://cert.trustedform.com/abc"}})),
    responses((status = 200, body = TrialReport)))]
async fn test_contract(
    State(state): State<AppState>,
    AdminTenant(tenant): AdminTenant,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<TrialReport>, Problem> {
    let contract_id = parse_id(&id)?;
    // The configuration the auction uses: archived contracts are not in it (404).
    let snapshot = state.config.snapshot();
    let tenant_config = snapshot.tenant(tenant).ok_or_else(Problem::not_found)?;
    let (offer, contract) = tenant_config
        .offers
        .values()
        .find_map(|offer| {
            let contract = offer
                .contracts
                .iter()
                .find(|c| c.compiled.id() == contract_id)?;
            Some((offer, contract))
        })
        .ok_or_else(Problem::not_found)?;

    let mut input = Input::new(&body, KEYS);
    let call = match input.value("call").and_then(Value::as_str) {
        Some("rtb") => TrialCall::Rtb,
        Some("delivery") => TrialCall::Delivery,
        _ => {
            input.error("call", "must be rtb or delivery");
            TrialCall::Delivery
        }
    };
    let empty = Map::new();
    let lead = object(&mut input, "lead", true).unwrap_or(&empty);
    let consent = object(&mut input, "consent", false).unwrap_or(&empty);
    let send = match input.value("send") {
        None => false,
        Some(Value::Bool(send)) => *send,
        Some(_) => {
            input.error("send", "must be true or false");
            false
        }
    };
    let sale_types = offer.rules.mode.sale_types();
    let sale_type = match input.value("sale_type") {
        None => sale_types[0],
        Some(value) => value
            .as_str()
            .and_then(|text| SaleType::from_str(text).ok())
            .filter(|sale_type| sale_types.contains(sale_type))
            .unwrap_or_else(|| {
                input.error("sale_type", "must be a sale type of the offer's mode");
                sale_types[0]
            }),
    };
    let price = match input.value("price").map(read_money) {
        None => contract_price(contract.compiled.pricing(), sale_type),
        Some(Ok(price)) if price >= Money::ZERO => price,
        Some(_) => {
            input.error("price", "must be an amount of at least 0");
            Money::ZERO
        }
    };
    let rtb_ref = input.text("rtb_ref", 256);
    let campaign = match input.value("campaign_id") {
        None => None,
        Some(value) => {
            let campaign = value
                .as_str()
                .and_then(|text| Uuid::parse_str(text).ok())
                .and_then(|id| tenant_config.campaigns.get(&id))
                .filter(|campaign| campaign.offer_id == offer.id);
            if campaign.is_none() {
                input.error("campaign_id", "no such campaign on the contract's offer");
            }
            campaign
        }
    };
    input.finish().map_err(Problem::invalid_config)?;
    // Checked as a partner's are (at most 10 short strings).
    let sub_ids = parse_sub_ids(body.get("sub_ids").cloned())?;
    let checked = match call {
        TrialCall::Rtb => validate_ping(&offer.schema, lead),
        TrialCall::Delivery => validate_post(&offer.schema, lead),
    };
    checked.map_err(lead_problem)?;

    let partner = campaign.and_then(|campaign| {
        let name = tenant_config.partner_names.get(&campaign.partner_id)?;
        Some(Named {
            id: campaign.partner_id,
            name,
        })
    });
    let names = CallNames {
        offer: Some(Named {
            id: offer.id,
            name: &offer.name,
        }),
        campaign: campaign.map(|campaign| Named {
            id: campaign.id,
            name: "",
        }),
        partner,
        sub_ids: sub_ids.as_ref(),
        schema: Some(&offer.schema),
    };
    let settings = &state.settings;
    let trial_input = TrialInput {
        lead,
        consent,
        sale_types,
        sale_type,
        price,
        rtb_ref: rtb_ref.as_deref(),
        tmax_ms: u32::try_from(settings.rtb_timeout_ms).unwrap_or(u32::MAX),
        delivery_timeout: contract
            .delivery
            .timeout(settings.delivery_timeout_ms)
            .min(settings.delivery_timeout_max()),
        names,
    };
    let found = trial::try_call(&state.http, contract, call, &trial_input, send).await;
    let (request, render_error) = match found.request {
        Ok(request) => (
            Some(TrialRequest {
                method: request.method,
                url: request.url,
                headers: request
                    .headers
                    .into_iter()
                    .map(|(name, value)| {
                        let shown = if name.eq_ignore_ascii_case("content-type")
                            || name == trial::TEST_HEADER
                        {
                            value
                        } else {
                            mask(&value)
                        };
                        (name, shown)
                    })
                    .collect(),
                body: request.body,
            }),
            None,
        ),
        Err(error) => (None, Some(error)),
    };
    Ok(Json(TrialReport {
        call: match call {
            TrialCall::Rtb => "rtb",
            TrialCall::Delivery => "delivery",
        },
        request,
        render_error,
        render_us: found.render_us,
        sent: found.sent,
        answer: found.answer,
        call_ms: found.call_ms,
        reading: found.reading,
    }))
}

/// An object of the body: `None` when absent (an error when `required`) or not an object.
fn object<'a>(input: &mut Input<'a>, key: &str, required: bool) -> Option<&'a Map<String, Value>> {
    match input.value(key) {
        Some(Value::Object(object)) => Some(object),
        None if !required => None,
        None => {
            input.error(key, "is required");
            None
        }
        Some(_) => {
            input.error(key, "must be an object");
            None
        }
    }
}

/// The contract's price for a sale type: its fixed price, or an RTB contract's `max_bid`
/// (a delivery tried without a `price` needs one), else zero.
fn contract_price(pricing: &Pricing, sale_type: SaleType) -> Money {
    match pricing {
        Pricing::Fixed(fixed) => match sale_type {
            SaleType::Exclusive => fixed.exclusive,
            SaleType::Shared => fixed.shared,
        },
        Pricing::Rtb(rtb) => rtb.max_bid,
    }
    .unwrap_or(Money::ZERO)
}
