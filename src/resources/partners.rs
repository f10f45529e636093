//! Partners: lead sources.

use super::prelude::*;

super::resource! {
    /// A lead source.
    view Partner, row PartnerRow, table Partners = "partners", values PartnerValues;
    fields {
        name: String = Name,
        status: Status = State,
    }
}
