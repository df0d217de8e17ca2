//! Page languages: English, Spanish and French, picked from `Accept-Language`.
//!
//! Every string a page or its script shows lives in [`Strings`]. Templates read the fields
//! directly; scripts get the whole table as JSON (see [`Strings::to_json`]) in a
//! `<script type="application/json" id="i18n">` block. Strings with `{name}` are filled in
//! by the scripts (always through `textContent`).

use serde::Serialize;

pub use callbridge_chat::Lang;

/// The strings of a page language.
pub fn strings(lang: Lang) -> &'static Strings {
    match lang {
        Lang::En => &EN,
        Lang::Es => &ES,
        Lang::Fr => &FR,
    }
}

/// Picks the page language from an `Accept-Language` header: the supported language with the
/// highest q-value wins; on a tie the one listed first. `q=0` means "not this one"; entries
/// with a malformed q-value are ignored. No header, or nothing supported: English.
pub fn negotiate(accept_language: Option<&str>) -> Lang {
    let Some(header) = accept_language else { return Lang::default() };
    let mut best: Option<(Lang, u16)> = None;
    for entry in header.split(',') {
        let mut parts = entry.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let mut q = Some(1000u16);
        for param in parts {
            if let Some((k, v)) = param.split_once('=')
                && k.trim().eq_ignore_ascii_case("q")
            {
                q = parse_q(v.trim());
            }
        }
        let (Some(lang), Some(q)) = (Lang::from_tag(tag), q) else { continue };
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((lang, q));
        }
    }
    best.map(|(l, _)| l).unwrap_or_default()
}

/// A q-value in thousandths (`0.8` → 800); `None` when malformed or out of range.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match int {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    let frac_val: u16 = if frac.is_empty() { 0 } else { format!("{frac:0<3}").parse().ok()? };
    let q = whole * 1000 + frac_val;
    (q <= 1000).then_some(q)
}

/// Every UI string of the pages and scripts.
#[derive(Debug, Serialize)]
pub struct Strings {
    // Landing page.
    pub landing_title: &'static str,
    pub landing_intro: &'static str,
    pub landing_create: &'static str,
    pub landing_cli: &'static str,
    pub landing_api: &'static str,
    pub landing_host: &'static str,
    // Room header.
    pub default_title: &'static str,
    pub kind_video: &'static str,
    pub kind_voice: &'static str,
    /// What an SFU room does with media.
    pub media_sfu: &'static str,
    /// What a mesh (private) room does with media.
    pub media_mesh: &'static str,
    pub hosted_by: &'static str,
    pub status_open: &'static str,
    /// The badge of a scheduled call's room before it opens.
    pub status_scheduled: &'static str,
    /// chrono's format of a scheduled call's start (before its zone's name).
    pub date_format: &'static str,
    pub status_locked: &'static str,
    pub status_full: &'static str,
    pub status_ended: &'static str,
    pub status_expired: &'static str,
    pub in_call: &'static str,
    pub nobody_here: &'static str,
    pub qr_label: &'static str,
    pub copy_link: &'static str,
    pub link_copied: &'static str,
    // Lobby form and preview.
    pub your_name: &'static str,
    pub name_placeholder: &'static str,
    pub join: &'static str,
    pub knock: &'static str,
    pub retry: &'static str,
    pub name_required: &'static str,
    pub invalid_name: &'static str,
    pub preview_unavailable: &'static str,
    pub preview_label: &'static str,
    // Media controls.
    pub microphone: &'static str,
    pub camera: &'static str,
    pub mic_on: &'static str,
    pub mic_off: &'static str,
    pub cam_on: &'static str,
    pub cam_off: &'static str,
    pub share_screen: &'static str,
    pub stop_sharing: &'static str,
    pub screen_unsupported: &'static str,
    pub device_unavailable: &'static str,
    pub leave: &'static str,
    pub enable_audio: &'static str,
    pub muted: &'static str,
    // Room page.
    pub people: &'static str,
    pub you: &'static str,
    pub call_controls: &'static str,
    pub video_grid: &'static str,
    pub joined_toast: &'static str,
    pub left_toast: &'static str,
    pub knock_toast: &'static str,
    // Host controls.
    pub host_controls: &'static str,
    pub lock: &'static str,
    pub unlock: &'static str,
    pub end: &'static str,
    pub remove: &'static str,
    pub mute: &'static str,
    pub mute_all: &'static str,
    /// Toast: a host muted this page's microphone (or camera).
    pub muted_by_host: &'static str,
    pub admit: &'static str,
    pub deny: &'static str,
    pub waiting_room: &'static str,
    pub no_knocks: &'static str,
    pub action_failed: &'static str,
    // Full-page states and connection states.
    pub state_not_found: &'static str,
    pub state_ended: &'static str,
    pub state_expired: &'static str,
    pub state_locked: &'static str,
    pub state_locked_knock: &'static str,
    pub state_full: &'static str,
    /// A scheduled call whose room has not opened yet.
    pub state_scheduled: &'static str,
    /// "Starts {time}" (the start in the deployment's time zone).
    pub starts: &'static str,
    /// "The room opens in {time}" (a countdown).
    pub opens_in: &'static str,
    pub state_removed: &'static str,
    pub state_denied: &'static str,
    pub state_waiting: &'static str,
    pub state_left: &'static str,
    pub state_replaced: &'static str,
    pub state_rate_limited: &'static str,
    pub state_error: &'static str,
    pub state_connecting: &'static str,
    pub state_reconnecting: &'static str,
    pub state_in_room: &'static str,
    pub rejoin: &'static str,
    pub back_to_lobby: &'static str,
}

impl Strings {
    /// The table as JSON that is safe inside a `<script type="application/json">` element:
    /// `<`, `>` and `&` are written as `\u` escapes, so no `</script>` or `<!--` can appear.
    pub fn to_json(&self) -> String {
        script_json(&serde_json::to_value(self).unwrap_or_default())
    }

    /// The word for a room status (`RoomStatus::as_str`).
    pub fn status(&self, status: &str) -> &'static str {
        match status {
            "open" => self.status_open,
            "locked" => self.status_locked,
            "full" => self.status_full,
            "ended" => self.status_ended,
            _ => self.status_expired,
        }
    }

    /// The label for a room kind (`RoomKind::as_str`).
    pub fn media(&self, media: crate::room::Media) -> &'static str {
        match media {
            crate::room::Media::Sfu => self.media_sfu,
            crate::room::Media::Mesh => self.media_mesh,
        }
    }

    pub fn kind(&self, kind: &str) -> &'static str {
        if kind == "voice" { self.kind_voice } else { self.kind_video }
    }
}

/// Serializes a value for a non-executed `<script>` block (see [`Strings::to_json`]).
pub fn script_json(value: &serde_json::Value) -> String {
    value.to_string().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

static EN: Strings = Strings {
    landing_title: "Call links anyone can join",
    landing_intro: "callbridge serves call links: open one in a browser, type your name and you are in. No account, no app.",
    landing_create: "Start a call",
    landing_cli: "On the server, mint a room with the command line:",
    landing_api: "Or ask the REST API (with the API token):",
    landing_host: "Both print a join link to share and a host link that lets you lock the room, admit people and end the call.",
    default_title: "Call",
    kind_video: "Video call",
    kind_voice: "Voice call",
    media_sfu: "Media passes through this server, encrypted in transit",
    media_mesh: "Private: media goes browser to browser, end-to-end encrypted (up to 8 people)",
    hosted_by: "Hosted by",
    status_open: "open",
    status_scheduled: "scheduled",
    date_format: "%a %-d %b %Y, %H:%M",
    status_locked: "locked",
    status_full: "full",
    status_ended: "ended",
    status_expired: "expired",
    in_call: "In the call",
    nobody_here: "Nobody is here yet.",
    qr_label: "QR code of the call link",
    copy_link: "Copy link",
    link_copied: "Link copied",
    your_name: "Your name",
    name_placeholder: "Enter your name",
    join: "Join",
    knock: "Ask to join",
    retry: "Try again",
    name_required: "Please enter your name.",
    invalid_name: "That name can't be used. Use 1 to 64 characters.",
    preview_unavailable: "Camera or microphone unavailable. You can still join.",
    preview_label: "Your camera preview",
    microphone: "Microphone",
    camera: "Camera",
    mic_on: "Mic on",
    mic_off: "Mic off",
    cam_on: "Camera on",
    cam_off: "Camera off",
    share_screen: "Share screen",
    stop_sharing: "Stop sharing",
    screen_unsupported: "Screen sharing isn't available on this device.",
    device_unavailable: "That device is unavailable.",
    leave: "Leave",
    enable_audio: "Click to turn on sound",
    muted: "muted",
    people: "People",
    you: "you",
    call_controls: "Call controls",
    video_grid: "Participants' video",
    joined_toast: "{name} joined",
    left_toast: "{name} left",
    knock_toast: "{name} is asking to join",
    host_controls: "Host controls",
    lock: "Lock room",
    unlock: "Unlock room",
    end: "End call for everyone",
    remove: "Remove",
    mute: "Mute",
    mute_all: "Mute everyone",
    muted_by_host: "A host muted you. Turn your microphone on to speak again.",
    admit: "Admit",
    deny: "Deny",
    waiting_room: "Asking to join",
    no_knocks: "No one is waiting.",
    action_failed: "That didn't work. Please try again.",
    state_not_found: "This call link doesn't exist.",
    state_ended: "This call has ended.",
    state_expired: "This call link has expired.",
    state_locked: "The host has locked this call.",
    state_locked_knock: "The host has locked this call. You can ask to join.",
    state_full: "This call is full.",
    state_scheduled: "This call hasn't started yet. Its room opens 10 minutes before the start; this page opens it for you.",
    starts: "Starts {time}",
    opens_in: "The room opens in {time}",
    state_removed: "You were removed from this room",
    state_denied: "The host declined your request",
    state_waiting: "Waiting for the host to let you in…",
    state_left: "You left the call.",
    state_replaced: "You joined this call from another tab or device.",
    state_rate_limited: "Too many attempts. Wait a moment and try again.",
    state_error: "Something went wrong. Please try again.",
    state_connecting: "Connecting…",
    state_reconnecting: "Connection lost. Reconnecting…",
    state_in_room: "Connected",
    rejoin: "Rejoin",
    back_to_lobby: "Back to the call page",
};

static ES: Strings = Strings {
    landing_title: "Enlaces de llamada para todo el mundo",
    landing_intro: "callbridge sirve enlaces de llamada: ábrelo en el navegador, escribe tu nombre y ya estás dentro. Sin cuenta y sin aplicación.",
    landing_create: "Iniciar una llamada",
    landing_cli: "En el servidor, crea una sala con la línea de comandos:",
    landing_api: "O pídela a la API REST (con el token de la API):",
    landing_host: "Ambos devuelven un enlace para compartir y un enlace de anfitrión para bloquear la sala, admitir personas y terminar la llamada.",
    default_title: "Llamada",
    kind_video: "Videollamada",
    kind_voice: "Llamada de voz",
    media_sfu: "El audio y el vídeo pasan por este servidor, cifrados en tránsito",
    media_mesh: "Privada: el audio y el vídeo van de navegador a navegador, cifrados de extremo a extremo (hasta 8 personas)",
    hosted_by: "Anfitrión:",
    status_open: "abierta",
    status_scheduled: "programada",
    date_format: "%d/%m/%Y, %H:%M",
    status_locked: "bloqueada",
    status_full: "llena",
    status_ended: "finalizada",
    status_expired: "caducada",
    in_call: "En la llamada",
    nobody_here: "Todavía no hay nadie.",
    qr_label: "Código QR del enlace de la llamada",
    copy_link: "Copiar enlace",
    link_copied: "Enlace copiado",
    your_name: "Tu nombre",
    name_placeholder: "Escribe tu nombre",
    join: "Unirse",
    knock: "Pedir unirse",
    retry: "Reintentar",
    name_required: "Escribe tu nombre.",
    invalid_name: "Ese nombre no es válido. Usa de 1 a 64 caracteres.",
    preview_unavailable: "La cámara o el micrófono no están disponibles. Puedes unirte igualmente.",
    preview_label: "Vista previa de tu cámara",
    microphone: "Micrófono",
    camera: "Cámara",
    mic_on: "Micro activado",
    mic_off: "Micro desactivado",
    cam_on: "Cámara activada",
    cam_off: "Cámara desactivada",
    share_screen: "Compartir pantalla",
    stop_sharing: "Dejar de compartir",
    screen_unsupported: "No se puede compartir la pantalla en este dispositivo.",
    device_unavailable: "Ese dispositivo no está disponible.",
    leave: "Salir",
    enable_audio: "Haz clic para activar el sonido",
    muted: "silenciado",
    people: "Personas",
    you: "tú",
    call_controls: "Controles de la llamada",
    video_grid: "Vídeo de los participantes",
    joined_toast: "{name} se ha unido",
    left_toast: "{name} ha salido",
    knock_toast: "{name} pide unirse",
    host_controls: "Controles del anfitrión",
    lock: "Bloquear sala",
    unlock: "Desbloquear sala",
    end: "Terminar para todos",
    remove: "Expulsar",
    mute: "Silenciar",
    mute_all: "Silenciar a todos",
    muted_by_host: "Un anfitrión te ha silenciado. Activa el micrófono para volver a hablar.",
    admit: "Admitir",
    deny: "Rechazar",
    waiting_room: "Piden unirse",
    no_knocks: "No hay nadie esperando.",
    action_failed: "No ha funcionado. Inténtalo de nuevo.",
    state_not_found: "Este enlace de llamada no existe.",
    state_ended: "Esta llamada ha terminado.",
    state_expired: "Este enlace de llamada ha caducado.",
    state_locked: "El anfitrión ha bloqueado esta llamada.",
    state_locked_knock: "El anfitrión ha bloqueado esta llamada. Puedes pedir unirte.",
    state_full: "Esta llamada está llena.",
    state_scheduled: "Esta llamada aún no ha empezado. Su sala se abre 10 minutos antes del inicio; esta página la abrirá por ti.",
    starts: "Empieza {time}",
    opens_in: "La sala se abre en {time}",
    state_removed: "Te han expulsado de esta sala",
    state_denied: "El anfitrión ha rechazado tu solicitud",
    state_waiting: "Esperando a que el anfitrión te deje entrar…",
    state_left: "Has salido de la llamada.",
    state_replaced: "Te has unido a esta llamada desde otra pestaña u otro dispositivo.",
    state_rate_limited: "Demasiados intentos. Espera un momento y vuelve a intentarlo.",
    state_error: "Algo ha fallado. Inténtalo de nuevo.",
    state_connecting: "Conectando…",
    state_reconnecting: "Se perdió la conexión. Reconectando…",
    state_in_room: "Conectado",
    rejoin: "Volver a unirse",
    back_to_lobby: "Volver a la página de la llamada",
};

static FR: Strings = Strings {
    landing_title: "Des liens d'appel pour tout le monde",
    landing_intro: "callbridge sert des liens d'appel : ouvrez-en un dans le navigateur, saisissez votre nom et vous y êtes. Sans compte ni application.",
    landing_create: "Lancer un appel",
    landing_cli: "Sur le serveur, créez un salon en ligne de commande :",
    landing_api: "Ou demandez-le à l'API REST (avec le jeton de l'API) :",
    landing_host: "Les deux donnent un lien à partager et un lien d'hôte pour verrouiller le salon, faire entrer des personnes et terminer l'appel.",
    default_title: "Appel",
    kind_video: "Appel vidéo",
    kind_voice: "Appel audio",
    media_sfu: "Le son et l’image passent par ce serveur, chiffrés en transit",
    media_mesh: "Privé : le son et l’image vont de navigateur à navigateur, chiffrés de bout en bout (jusqu’à 8 personnes)",
    hosted_by: "Organisé par",
    status_open: "ouvert",
    status_scheduled: "programmé",
    date_format: "%d/%m/%Y, %H:%M",
    status_locked: "verrouillé",
    status_full: "complet",
    status_ended: "terminé",
    status_expired: "expiré",
    in_call: "Dans l'appel",
    nobody_here: "Personne n'est encore là.",
    qr_label: "Code QR du lien de l'appel",
    copy_link: "Copier le lien",
    link_copied: "Lien copié",
    your_name: "Votre nom",
    name_placeholder: "Saisissez votre nom",
    join: "Rejoindre",
    knock: "Demander à entrer",
    retry: "Réessayer",
    name_required: "Veuillez saisir votre nom.",
    invalid_name: "Ce nom n'est pas accepté. Utilisez 1 à 64 caractères.",
    preview_unavailable: "Caméra ou micro indisponible. Vous pouvez quand même rejoindre.",
    preview_label: "Aperçu de votre caméra",
    microphone: "Micro",
    camera: "Caméra",
    mic_on: "Micro activé",
    mic_off: "Micro coupé",
    cam_on: "Caméra activée",
    cam_off: "Caméra coupée",
    share_screen: "Partager l'écran",
    stop_sharing: "Arrêter le partage",
    screen_unsupported: "Le partage d'écran n'est pas disponible sur cet appareil.",
    device_unavailable: "Cet appareil est indisponible.",
    leave: "Quitter",
    enable_audio: "Cliquez pour activer le son",
    muted: "micro coupé",
    people: "Participants",
    you: "vous",
    call_controls: "Commandes de l'appel",
    video_grid: "Vidéo des participants",
    joined_toast: "{name} a rejoint l'appel",
    left_toast: "{name} est parti",
    knock_toast: "{name} demande à entrer",
    host_controls: "Commandes de l'hôte",
    lock: "Verrouiller",
    unlock: "Déverrouiller",
    end: "Terminer pour tous",
    remove: "Retirer",
    mute: "Couper le micro",
    mute_all: "Couper tous les micros",
    muted_by_host: "Un hôte a coupé votre micro. Rallumez-le pour reparler.",
    admit: "Accepter",
    deny: "Refuser",
    waiting_room: "Demandes d'entrée",
    no_knocks: "Personne n'attend.",
    action_failed: "Cela n'a pas fonctionné. Réessayez.",
    state_not_found: "Ce lien d'appel n'existe pas.",
    state_ended: "Cet appel est terminé.",
    state_expired: "Ce lien d'appel a expiré.",
    state_locked: "L'hôte a verrouillé cet appel.",
    state_locked_knock: "L'hôte a verrouillé cet appel. Vous pouvez demander à entrer.",
    state_full: "Cet appel est complet.",
    state_scheduled: "Cet appel n'a pas encore commencé. Sa salle ouvre 10 minutes avant le début ; cette page l'ouvrira pour vous.",
    starts: "Commence {time}",
    opens_in: "La salle ouvre dans {time}",
    state_removed: "Vous avez été retiré de ce salon",
    state_denied: "L'hôte a refusé votre demande",
    state_waiting: "En attente de l'autorisation de l'hôte…",
    state_left: "Vous avez quitté l'appel.",
    state_replaced: "Vous avez rejoint cet appel depuis un autre onglet ou appareil.",
    state_rate_limited: "Trop de tentatives. Patientez un instant puis réessayez.",
    state_error: "Une erreur s'est produite. Réessayez.",
    state_connecting: "Connexion…",
    state_reconnecting: "Connexion perdue. Reconnexion…",
    state_in_room: "Connecté",
    rejoin: "Rejoindre à nouveau",
    back_to_lobby: "Retour à la page de l'appel",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_header_or_nothing_supported_is_english() {
        assert_eq!(negotiate(None), Lang::En);
        assert_eq!(negotiate(Some("")), Lang::En);
        assert_eq!(negotiate(Some("de-DE, it;q=0.8")), Lang::En);
        assert_eq!(negotiate(Some("*")), Lang::En);
        assert_eq!(negotiate(Some("garbage;;;,,")), Lang::En);
    }

    #[test]
    fn primary_subtags_match_case_insensitively() {
        assert_eq!(negotiate(Some("es")), Lang::Es);
        assert_eq!(negotiate(Some("es-MX")), Lang::Es);
        assert_eq!(negotiate(Some("FR-ca")), Lang::Fr);
        assert_eq!(negotiate(Some("en-GB")), Lang::En);
        assert_eq!(negotiate(Some("de, fr;q=0.3")), Lang::Fr);
    }

    #[test]
    fn q_values_are_respected() {
        assert_eq!(negotiate(Some("en;q=0.5, fr;q=0.9")), Lang::Fr);
        assert_eq!(negotiate(Some("fr;q=0.5, es;q=0.51, en;q=0.2")), Lang::Es);
        assert_eq!(negotiate(Some("es-ES,es;q=0.9,en;q=0.8")), Lang::Es);
        assert_eq!(negotiate(Some("en-US,en;q=0.9,fr;q=0.8")), Lang::En);
        assert_eq!(negotiate(Some("fr ; q = 0.7 , es;q=0.6")), Lang::Fr);
        assert_eq!(negotiate(Some("fr;Q=1.0, es")), Lang::Fr, "ties go to the first listed");
    }

    #[test]
    fn zero_and_malformed_q_values_exclude() {
        assert_eq!(negotiate(Some("fr;q=0, es;q=0.1")), Lang::Es);
        assert_eq!(negotiate(Some("fr;q=0.000")), Lang::En);
        assert_eq!(negotiate(Some("fr;q=abc, es;q=0.2")), Lang::Es);
        assert_eq!(negotiate(Some("fr;q=1.5, es;q=0.2")), Lang::Es);
        assert_eq!(negotiate(Some("fr;q=0.1234, es;q=0.2")), Lang::Es);
    }

    #[test]
    fn q_parsing() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.8"), Some(800));
        assert_eq!(parse_q("0.05"), Some(50));
        assert_eq!(parse_q("0."), Some(0));
        assert_eq!(parse_q("1.001"), None);
        assert_eq!(parse_q(""), None);
        assert_eq!(parse_q("-0.5"), None);
    }

    #[test]
    fn script_json_cannot_close_the_script_element() {
        let json = script_json(&serde_json::json!({"x": "</script><!-- & >"}));
        assert!(!json.contains('<') && !json.contains('>') && !json.contains('&'));
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["x"], "</script><!-- & >");
    }

    #[test]
    fn every_language_has_its_strings() {
        for lang in [Lang::En, Lang::Es, Lang::Fr] {
            let json: serde_json::Value = serde_json::from_str(&strings(lang).to_json()).unwrap();
            let obj = json.as_object().unwrap();
            assert!(obj.values().all(|v| !v.as_str().unwrap().is_empty()));
            for key in ["joined_toast", "left_toast", "knock_toast"] {
                assert!(obj[key].as_str().unwrap().contains("{name}"), "{key} in {lang:?}");
            }
        }
        assert_eq!(strings(Lang::En).state_removed, "You were removed from this room");
        assert_eq!(strings(Lang::En).state_denied, "The host declined your request");
    }
}
