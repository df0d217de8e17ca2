//! The languages callbridge speaks (English, Spanish, French) and the words of a join card in
//! each, shared by every card renderer so the three platforms say the same thing.
//!
//! A chat's `language` (per-chat policy) picks them; the core's replies and private messages
//! have their own table. Words with `{name}` are filled by [`fill`], which never reads its
//! values as templates, so a user's name stays inert text.

use serde::{Deserialize, Serialize};

/// A supported language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    En,
    Es,
    Fr,
}

impl Lang {
    pub const ALL: [Lang; 3] = [Lang::En, Lang::Es, Lang::Fr];

    /// The BCP 47 tag (`<html lang>`, the config's `language`).
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Es => "es",
            Lang::Fr => "fr",
        }
    }

    /// The language of a tag's primary subtag (`en`, `es-MX` and `es_ES` → `es`), if supported.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.split(['-', '_']).next().unwrap_or("");
        Lang::ALL.into_iter().find(|l| l.code().eq_ignore_ascii_case(primary))
    }

    /// A join card's words in this language.
    pub fn card(self) -> &'static CardWords {
        match self {
            Lang::En => &CARD_EN,
            Lang::Es => &CARD_ES,
            Lang::Fr => &CARD_FR,
        }
    }
}

/// Replaces each `{key}` of `template` with its value, once, left to right: a value that
/// contains `{…}` is copied as it is.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}').map(|close| (&after[..close], close)) {
            Some((key, close)) if values.iter().any(|(k, _)| *k == key) => {
                out.push_str(values.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).unwrap_or_default());
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `{key}`s a template uses, in order (for the tests that keep translations in step).
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut keys: Vec<&str> = template.split('{').skip(1).filter_map(|s| s.split_once('}').map(|(k, _)| k)).collect();
    keys.sort_unstable();
    keys
}

/// What a join card says, apart from the user's strings.
#[derive(Debug, Serialize)]
pub struct CardWords {
    pub video_call: &'static str,
    pub voice_call: &'static str,
    pub private_video_call: &'static str,
    pub private_voice_call: &'static str,
    /// `{kind} hosted by {host}` (the host's name already marked up by the renderer).
    pub hosted_by: &'static str,
    pub route_mesh: &'static str,
    pub route_sfu: &'static str,
    pub open: &'static str,
    pub locked: &'static str,
    pub full: &'static str,
    pub ended: &'static str,
    pub expired: &'static str,
    /// `{when}`.
    pub starts: &'static str,
    pub nobody_joined: &'static str,
    pub attendance: &'static str,
    /// `{time}` UTC, `{duration}`.
    pub joined_at: &'static str,
    pub nobody_in: &'static str,
    pub in_the_call: &'static str,
    /// `{n}`.
    pub joined_so_far: &'static str,
    pub asking: &'static str,
    pub ringing: &'static str,
    pub ring_ringing: &'static str,
    pub ring_accepted: &'static str,
    pub ring_declined: &'static str,
    pub ring_missed: &'static str,
    pub ring_unreachable: &'static str,
    pub join: &'static str,
    pub join_as_me: &'static str,
    pub lock: &'static str,
    pub unlock: &'static str,
    pub end: &'static str,
    pub ring_me: &'static str,
    pub call_again: &'static str,
    /// `{name}`.
    pub admit: &'static str,
    /// `{name}`.
    pub deny: &'static str,
    /// Matrix: reactions instead of buttons. `{link}`.
    pub join_line: &'static str,
    pub react_hint: &'static str,
    pub react_again: &'static str,
    /// Matrix: the link's text.
    pub join_the_call: &'static str,
    /// Matrix: before a private message's reactions (`React: ✅ Accept · ❌ Decline`).
    pub react: &'static str,
    /// Discord: how to write the `when` option of `/call`, in the user's own locale.
    pub when_hint: &'static str,
    /// Matrix: `{admit}` and `{deny}` are the commands (`!admit`, `!deny`).
    pub admit_hint: &'static str,
}

static CARD_EN: CardWords = CardWords {
    video_call: "Video call",
    voice_call: "Voice call",
    private_video_call: "Private video call",
    private_voice_call: "Private voice call",
    hosted_by: "{kind} hosted by {host}",
    route_mesh: "🔐 Browser to browser, end-to-end encrypted (up to 8 people)",
    route_sfu: "📡 Media passes through this bridge, encrypted in transit",
    open: "🟢 Open",
    locked: "🔒 Locked — no new joiners",
    full: "⛔ Full",
    ended: "⚫ Ended",
    expired: "⚫ Expired",
    starts: "🕒 Starts {when}",
    nobody_joined: "Nobody joined.",
    attendance: "Attendance",
    joined_at: "joined {time} UTC, {duration}",
    nobody_in: "Nobody is in yet.",
    in_the_call: "In the call",
    joined_so_far: "{n} joined so far",
    asking: "Asking to join",
    ringing: "Ringing",
    ring_ringing: "📞 ringing",
    ring_accepted: "✅ accepted",
    ring_declined: "✖ declined",
    ring_missed: "⌛ missed",
    ring_unreachable: "✉ not reachable privately",
    join: "Join",
    join_as_me: "🙋 Join as me",
    lock: "🔒 Lock",
    unlock: "🔓 Unlock",
    end: "End",
    ring_me: "🔔 Ring me",
    call_again: "📞 Call again",
    admit: "✅ Admit {name}",
    deny: "✖ Deny {name}",
    join_line: "Join: {link}",
    react_hint: "React 🔒 to lock, 🔓 to unlock, ⏹ to end (host or moderators) · 🙋 for a link in your name · 🔔 to be rung for calls here",
    react_again: "React 🔁 to call again",
    join_the_call: "Join the call",
    react: "React",
    when_hint: "Say when as: in 30m, at 18:00, today 17:30 or tomorrow 9:00 (at most 30 days ahead).",
    admit_hint: "({admit} CODE or {deny} CODE; a name works when only one person has it)",
};

static CARD_ES: CardWords = CardWords {
    video_call: "Videollamada",
    voice_call: "Llamada de voz",
    private_video_call: "Videollamada privada",
    private_voice_call: "Llamada de voz privada",
    hosted_by: "{kind} de {host}",
    route_mesh: "🔐 De navegador a navegador, cifrada de extremo a extremo (hasta 8 personas)",
    route_sfu: "📡 El audio y el vídeo pasan por este puente, cifrados en tránsito",
    open: "🟢 Abierta",
    locked: "🔒 Cerrada: no entra nadie más",
    full: "⛔ Llena",
    ended: "⚫ Terminada",
    expired: "⚫ Caducada",
    starts: "🕒 Empieza {when}",
    nobody_joined: "No entró nadie.",
    attendance: "Asistencia",
    joined_at: "entró a las {time} UTC, {duration}",
    nobody_in: "Todavía no hay nadie.",
    in_the_call: "En la llamada",
    joined_so_far: "{n} han entrado hasta ahora",
    asking: "Piden entrar",
    ringing: "Llamando",
    ring_ringing: "📞 sonando",
    ring_accepted: "✅ aceptó",
    ring_declined: "✖ rechazó",
    ring_missed: "⌛ perdida",
    ring_unreachable: "✉ no se le puede escribir en privado",
    join: "Entrar",
    join_as_me: "🙋 Entrar como yo",
    lock: "🔒 Cerrar",
    unlock: "🔓 Abrir",
    end: "Terminar",
    ring_me: "🔔 Llámame",
    call_again: "📞 Llamar otra vez",
    admit: "✅ Dejar entrar a {name}",
    deny: "✖ Rechazar a {name}",
    join_line: "Entrar: {link}",
    react_hint: "Reacciona 🔒 para cerrar, 🔓 para abrir, ⏹ para terminar (anfitrión o moderadores) · 🙋 para un enlace a tu nombre · 🔔 para que te llamen aquí",
    react_again: "Reacciona 🔁 para llamar otra vez",
    join_the_call: "Entrar en la llamada",
    react: "Reacciona",
    when_hint: "Di cuándo así: in 30m, at 18:00, today 17:30 o tomorrow 9:00 (como mucho 30 días antes).",
    admit_hint: "({admit} CÓDIGO o {deny} CÓDIGO; basta el nombre si solo una persona lo tiene)",
};

static CARD_FR: CardWords = CardWords {
    video_call: "Appel vidéo",
    voice_call: "Appel vocal",
    private_video_call: "Appel vidéo privé",
    private_voice_call: "Appel vocal privé",
    hosted_by: "{kind} animé par {host}",
    route_mesh: "🔐 De navigateur à navigateur, chiffré de bout en bout (jusqu'à 8 personnes)",
    route_sfu: "📡 Le son et l'image passent par ce pont, chiffrés en transit",
    open: "🟢 Ouvert",
    locked: "🔒 Verrouillé : plus personne n'entre",
    full: "⛔ Complet",
    ended: "⚫ Terminé",
    expired: "⚫ Expiré",
    starts: "🕒 Commence {when}",
    nobody_joined: "Personne n'est venu.",
    attendance: "Présences",
    joined_at: "arrivé·e à {time} UTC, {duration}",
    nobody_in: "Personne pour l'instant.",
    in_the_call: "Dans l'appel",
    joined_so_far: "{n} venus jusqu'ici",
    asking: "Demandent à entrer",
    ringing: "Appelés",
    ring_ringing: "📞 sonne",
    ring_accepted: "✅ a accepté",
    ring_declined: "✖ a refusé",
    ring_missed: "⌛ manqué",
    ring_unreachable: "✉ injoignable en privé",
    join: "Rejoindre",
    join_as_me: "🙋 Rejoindre en mon nom",
    lock: "🔒 Verrouiller",
    unlock: "🔓 Déverrouiller",
    end: "Terminer",
    ring_me: "🔔 Appelez-moi",
    call_again: "📞 Rappeler",
    admit: "✅ Faire entrer {name}",
    deny: "✖ Refuser {name}",
    join_line: "Rejoindre : {link}",
    react_hint: "Réagissez 🔒 pour verrouiller, 🔓 pour déverrouiller, ⏹ pour terminer (hôte ou modérateurs) · 🙋 pour un lien à votre nom · 🔔 pour être appelé ici",
    react_again: "Réagissez 🔁 pour rappeler",
    join_the_call: "Rejoindre l'appel",
    react: "Réagissez",
    when_hint: "Indiquez l'heure ainsi : in 30m, at 18:00, today 17:30 ou tomorrow 9:00 (30 jours à l'avance au plus).",
    admit_hint: "({admit} CODE ou {deny} CODE ; le nom suffit si une seule personne le porte)",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_is_one_pass_and_leaves_values_inert() {
        assert_eq!(fill("{a} and {b}", &[("a", "{b}"), ("b", "x")]), "{b} and x");
        assert_eq!(fill("{unknown} {a}", &[("a", "1")]), "{unknown} 1");
        assert_eq!(fill("no keys", &[]), "no keys");
        assert_eq!(fill("{", &[]), "{");
    }

    #[test]
    fn every_language_has_every_card_word_with_the_same_placeholders() {
        let words = |l: Lang| serde_json::to_value(l.card()).unwrap();
        let en = words(Lang::En);
        for lang in [Lang::Es, Lang::Fr] {
            let other = words(lang);
            for (key, value) in en.as_object().unwrap() {
                let theirs = other[key].as_str().unwrap();
                assert!(!theirs.is_empty(), "{lang:?} {key}");
                assert_eq!(placeholders(value.as_str().unwrap()), placeholders(theirs), "{lang:?} {key}");
            }
        }
    }

    #[test]
    fn tags() {
        assert_eq!(Lang::from_tag("es-MX"), Some(Lang::Es));
        assert_eq!(Lang::from_tag("FR_ca"), Some(Lang::Fr));
        assert_eq!(Lang::from_tag("de"), None);
    }
}
