"""Fixed wording of the screening call, localised. Pure Python: no LiveKit imports.

The sentences that matter legally or for the candidate's trust (AI disclosure, recording-consent
notice, voicemail message) and the structural ones (greeting, re-ask, other vacancies, scheduling
confirmation, closings) are spoken from these templates, never improvised by the LLM. Dutch,
French, English and German are written out; for the other supported languages the English
template is rendered and the agent asks the LLM for a faithful translation (`render` says which
language the text is in, so the caller knows).

Placeholders: {name} {job_title} {slots} {slot} {location} {address} {date}.
"""

from __future__ import annotations

from collections.abc import Sequence
from string import Formatter

TEMPLATE_KEYS: tuple[str, ...] = (
    "greeting_named",
    "greeting_generic",
    "greeting_returning",
    "ai_disclosure",
    "consent_question",
    "resume_intro",
    "questions_intro",
    "reask_unclear",
    "off_topic",
    "still_there",
    "escalation_unavailable",
    "other_vacancies",
    "scheduling_offer",
    "scheduling_preference",
    "scheduling_confirm_full",
    "scheduling_confirm_location",
    "scheduling_confirm",
    "preference_noted",
    "existing_booking",
    "closing_completed",
    "closing_alternatives",
    "closing_not_interested",
    "closing_consent_declined",
    "closing_dnc",
    "closing_unclear",
    "closing_irrelevant",
    "closing_silence",
    "closing_time_up",
    "escalation_transfer",
    "escalation_callback",
    "voicemail_named",
    "voicemail_generic",
    "default_open_question",
    "list_or",
)

TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "greeting_named": (
            "Hello {name}, this is the recruitment assistant calling about your application "
            "for {job_title}."
        ),
        "greeting_generic": (
            "Hello, this is the recruitment assistant calling about your application "
            "for {job_title}."
        ),
        "greeting_returning": (
            "Hello {name}, nice to speak with you again. This is the recruitment assistant "
            "calling about your application for {job_title}."
        ),
        "ai_disclosure": "I am an AI assistant, not a person.",
        "consent_question": (
            "This call is recorded and transcribed so that a recruiter can review your answers. "
            "Do you agree to that?"
        ),
        "resume_intro": "We spoke before, so I will pick up where we left off.",
        "questions_intro": "I have a few short questions for you.",
        "reask_unclear": "Sorry, I didn't quite catch that.",
        "off_topic": "Let's stay with the questions about this job for now.",
        "still_there": "Are you still there?",
        "escalation_unavailable": (
            "I can't connect you with a recruiter right now, but a recruiter will review "
            "your answers."
        ),
        "other_vacancies": (
            "Thank you. For this position that is unfortunately a requirement. Would you be "
            "interested in other vacancies with us?"
        ),
        "scheduling_offer": (
            "Thank you for your answers. I can offer you an interview on {slots}. "
            "Which moment suits you best?"
        ),
        "scheduling_preference": (
            "Thank you for your answers. When would an interview suit you best?"
        ),
        "scheduling_confirm_full": (
            "Great, your interview is scheduled for {slot} at our {location} office, {address}."
        ),
        "scheduling_confirm_location": (
            "Great, your interview is scheduled for {slot} at our {location} office."
        ),
        "scheduling_confirm": "Great, your interview is scheduled for {slot}.",
        "preference_noted": (
            "Thank you, I have noted your preference and a recruiter will confirm the appointment."
        ),
        "existing_booking": "Your appointment on {date} stays as planned.",
        "closing_completed": (
            "Thank you for your time. A recruiter will be in touch soon. Have a nice day!"
        ),
        "closing_alternatives": (
            "Good, we will let you know about other vacancies that fit you. Thank you for your "
            "time and have a nice day!"
        ),
        "closing_not_interested": "No problem. Thank you for your time and have a nice day!",
        "closing_consent_declined": (
            "No problem, then we will stop the call here. Thank you for your time, goodbye!"
        ),
        "closing_dnc": "Understood, we will not call you again. Have a nice day, goodbye!",
        "closing_unclear": (
            "I'm sorry, I could not understand your answer well. A recruiter will get in touch "
            "with you. Thank you and goodbye."
        ),
        "closing_irrelevant": (
            "Let's end the call here. A recruiter will review your application. "
            "Thank you and goodbye."
        ),
        "closing_silence": "I can't hear you anymore. We will call you back later. Goodbye.",
        "closing_time_up": (
            "We have reached the end of the time for this call. We will get back to you. "
            "Thank you and goodbye."
        ),
        "escalation_transfer": "I will connect you with a recruiter now, one moment please.",
        "escalation_callback": "I will ask a recruiter to call you back. Thank you and goodbye.",
        "voicemail_named": (
            "Hello {name}, this is the recruitment assistant, an AI assistant, calling about "
            "your application for {job_title}. We will call you back later. Goodbye."
        ),
        "voicemail_generic": (
            "Hello, this is the recruitment assistant, an AI assistant, calling about your "
            "application for {job_title}. We will call you back later. Goodbye."
        ),
        "default_open_question": (
            "To start, could you tell me briefly about your experience that is relevant "
            "for {job_title}?"
        ),
        "list_or": "or",
    },
    "nl": {
        "greeting_named": (
            "Hallo {name}, met de recruitmentassistent. Ik bel over je sollicitatie "
            "voor {job_title}."
        ),
        "greeting_generic": (
            "Hallo, met de recruitmentassistent. Ik bel over je sollicitatie voor {job_title}."
        ),
        "greeting_returning": (
            "Hallo {name}, fijn om je opnieuw te spreken. Met de recruitmentassistent, over je "
            "sollicitatie voor {job_title}."
        ),
        "ai_disclosure": "Ik ben een AI-assistent, geen mens.",
        "consent_question": (
            "Dit gesprek wordt opgenomen en uitgeschreven zodat een recruiter je antwoorden kan "
            "bekijken. Ga je daarmee akkoord?"
        ),
        "resume_intro": "We spraken elkaar al eerder, dus ik ga verder waar we gebleven waren.",
        "questions_intro": "Ik heb een paar korte vragen voor je.",
        "reask_unclear": "Sorry, dat heb ik niet goed begrepen.",
        "off_topic": "Laten we het even bij de vragen over deze vacature houden.",
        "still_there": "Ben je er nog?",
        "escalation_unavailable": (
            "Ik kan je nu niet doorverbinden met een recruiter, maar een recruiter bekijkt je "
            "antwoorden wel."
        ),
        "other_vacancies": (
            "Dank je. Voor deze functie is dat helaas een vereiste. Zou je interesse hebben in "
            "andere vacatures bij ons?"
        ),
        "scheduling_offer": (
            "Bedankt voor je antwoorden. Ik kan je een gesprek aanbieden op {slots}. "
            "Welk moment past jou het best?"
        ),
        "scheduling_preference": (
            "Bedankt voor je antwoorden. Wanneer past een sollicitatiegesprek jou het best?"
        ),
        "scheduling_confirm_full": (
            "Top, je gesprek staat gepland op {slot} in ons kantoor {location}, {address}."
        ),
        "scheduling_confirm_location": (
            "Top, je gesprek staat gepland op {slot} in ons kantoor {location}."
        ),
        "scheduling_confirm": "Top, je gesprek staat gepland op {slot}.",
        "preference_noted": (
            "Dank je, ik heb je voorkeur genoteerd. Een recruiter bevestigt de afspraak."
        ),
        "existing_booking": "Je afspraak op {date} blijft staan.",
        "closing_completed": (
            "Bedankt voor je tijd. Een recruiter neemt snel contact met je op. Nog een fijne dag!"
        ),
        "closing_alternatives": (
            "Fijn, we laten je weten wanneer er andere vacatures voor je zijn. Bedankt voor je "
            "tijd en nog een fijne dag!"
        ),
        "closing_not_interested": "Geen probleem. Bedankt voor je tijd en nog een fijne dag!",
        "closing_consent_declined": (
            "Geen probleem, dan stoppen we het gesprek hier. Bedankt voor je tijd, dag!"
        ),
        "closing_dnc": "Begrepen, we bellen je niet meer. Nog een fijne dag, dag!",
        "closing_unclear": (
            "Het spijt me, ik kon je antwoord niet goed verstaan. Een recruiter neemt contact "
            "met je op. Bedankt en tot ziens."
        ),
        "closing_irrelevant": (
            "We ronden het gesprek hier af. Een recruiter bekijkt je sollicitatie. "
            "Bedankt en tot ziens."
        ),
        "closing_silence": "Ik hoor je niet meer. We bellen je later nog eens terug. Tot ziens.",
        "closing_time_up": (
            "Onze tijd voor dit gesprek is om. We nemen nog contact met je op. "
            "Bedankt en tot ziens."
        ),
        "escalation_transfer": "Ik verbind je nu door met een recruiter, een ogenblik geduld.",
        "escalation_callback": (
            "Ik vraag een recruiter om je terug te bellen. Bedankt en tot ziens."
        ),
        "voicemail_named": (
            "Hallo {name}, met de recruitmentassistent, een AI-assistent, over je sollicitatie "
            "voor {job_title}. We bellen je later nog eens terug. Tot ziens."
        ),
        "voicemail_generic": (
            "Hallo, met de recruitmentassistent, een AI-assistent, over je sollicitatie voor "
            "{job_title}. We bellen je later nog eens terug. Tot ziens."
        ),
        "default_open_question": (
            "Om te beginnen: kun je kort vertellen welke ervaring je hebt die relevant is "
            "voor {job_title}?"
        ),
        "list_or": "of",
    },
    "fr": {
        "greeting_named": (
            "Bonjour {name}, ici l'assistant de recrutement. Je vous appelle au sujet de votre "
            "candidature pour le poste {job_title}."
        ),
        "greeting_generic": (
            "Bonjour, ici l'assistant de recrutement. Je vous appelle au sujet de votre "
            "candidature pour le poste {job_title}."
        ),
        "greeting_returning": (
            "Bonjour {name}, ravi de vous parler à nouveau. Ici l'assistant de recrutement, au "
            "sujet de votre candidature pour le poste {job_title}."
        ),
        "ai_disclosure": "Je suis un assistant d'intelligence artificielle, pas une personne.",
        "consent_question": (
            "Cet appel est enregistré et transcrit afin qu'un recruteur puisse consulter vos "
            "réponses. Êtes-vous d'accord ?"
        ),
        "resume_intro": (
            "Nous nous sommes déjà parlé, je reprends donc là où nous nous étions arrêtés."
        ),
        "questions_intro": "J'ai quelques questions courtes pour vous.",
        "reask_unclear": "Pardon, je n'ai pas bien compris.",
        "off_topic": "Restons pour l'instant sur les questions concernant ce poste.",
        "still_there": "Êtes-vous toujours là ?",
        "escalation_unavailable": (
            "Je ne peux pas vous mettre en relation avec un recruteur pour le moment, mais un "
            "recruteur examinera vos réponses."
        ),
        "other_vacancies": (
            "Merci. Pour ce poste, c'est malheureusement une condition requise. Seriez-vous "
            "intéressé par d'autres offres d'emploi chez nous ?"
        ),
        "scheduling_offer": (
            "Merci pour vos réponses. Je peux vous proposer un entretien aux moments suivants : "
            "{slots}. Quel moment vous convient le mieux ?"
        ),
        "scheduling_preference": (
            "Merci pour vos réponses. Quand un entretien vous conviendrait-il le mieux ?"
        ),
        "scheduling_confirm_full": (
            "Parfait, votre entretien est fixé : {slot}, dans notre bureau de {location}, "
            "{address}."
        ),
        "scheduling_confirm_location": (
            "Parfait, votre entretien est fixé : {slot}, dans notre bureau de {location}."
        ),
        "scheduling_confirm": "Parfait, votre entretien est fixé : {slot}.",
        "preference_noted": (
            "Merci, j'ai noté votre préférence. Un recruteur vous confirmera le rendez-vous."
        ),
        "existing_booking": "Votre rendez-vous ({date}) est maintenu.",
        "closing_completed": (
            "Merci pour votre temps. Un recruteur vous contactera bientôt. Bonne journée !"
        ),
        "closing_alternatives": (
            "Très bien, nous vous informerons des autres offres qui vous correspondent. Merci "
            "pour votre temps et bonne journée !"
        ),
        "closing_not_interested": "Pas de problème. Merci pour votre temps et bonne journée !",
        "closing_consent_declined": (
            "Pas de problème, nous arrêtons donc l'appel ici. Merci pour votre temps, au revoir !"
        ),
        "closing_dnc": "C'est noté, nous ne vous appellerons plus. Bonne journée, au revoir !",
        "closing_unclear": (
            "Je suis désolé, je n'ai pas bien compris votre réponse. Un recruteur vous "
            "contactera. Merci et au revoir."
        ),
        "closing_irrelevant": (
            "Nous allons terminer l'appel ici. Un recruteur examinera votre candidature. "
            "Merci et au revoir."
        ),
        "closing_silence": "Je ne vous entends plus. Nous vous rappellerons plus tard. Au revoir.",
        "closing_time_up": (
            "Le temps prévu pour cet appel est écoulé. Nous reviendrons vers vous. "
            "Merci et au revoir."
        ),
        "escalation_transfer": (
            "Je vous mets en relation avec un recruteur, un instant s'il vous plaît."
        ),
        "escalation_callback": (
            "Je vais demander à un recruteur de vous rappeler. Merci et au revoir."
        ),
        "voicemail_named": (
            "Bonjour {name}, ici l'assistant de recrutement, un assistant d'intelligence "
            "artificielle, au sujet de votre candidature pour le poste {job_title}. Nous vous "
            "rappellerons plus tard. Au revoir."
        ),
        "voicemail_generic": (
            "Bonjour, ici l'assistant de recrutement, un assistant d'intelligence artificielle, "
            "au sujet de votre candidature pour le poste {job_title}. Nous vous rappellerons "
            "plus tard. Au revoir."
        ),
        "default_open_question": (
            "Pour commencer, pourriez-vous me parler brièvement de votre expérience utile "
            "pour le poste {job_title} ?"
        ),
        "list_or": "ou",
    },
    "de": {
        "greeting_named": (
            "Guten Tag {name}, hier ist der Recruiting-Assistent. Ich rufe wegen Ihrer "
            "Bewerbung für die Stelle {job_title} an."
        ),
        "greeting_generic": (
            "Guten Tag, hier ist der Recruiting-Assistent. Ich rufe wegen Ihrer Bewerbung für "
            "die Stelle {job_title} an."
        ),
        "greeting_returning": (
            "Guten Tag {name}, schön, wieder mit Ihnen zu sprechen. Hier ist der "
            "Recruiting-Assistent, wegen Ihrer Bewerbung für die Stelle {job_title}."
        ),
        "ai_disclosure": "Ich bin ein KI-Assistent, kein Mensch.",
        "consent_question": (
            "Dieses Gespräch wird aufgezeichnet und transkribiert, damit ein Recruiter Ihre "
            "Antworten prüfen kann. Sind Sie damit einverstanden?"
        ),
        "resume_intro": (
            "Wir haben bereits gesprochen, daher mache ich dort weiter, wo wir aufgehört haben."
        ),
        "questions_intro": "Ich habe ein paar kurze Fragen an Sie.",
        "reask_unclear": "Entschuldigung, das habe ich nicht ganz verstanden.",
        "off_topic": "Bleiben wir zunächst bei den Fragen zu dieser Stelle.",
        "still_there": "Sind Sie noch da?",
        "escalation_unavailable": (
            "Ich kann Sie gerade nicht mit einem Recruiter verbinden, aber ein Recruiter wird "
            "sich Ihre Antworten ansehen."
        ),
        "other_vacancies": (
            "Danke. Für diese Stelle ist das leider eine Voraussetzung. Hätten Sie Interesse an "
            "anderen offenen Stellen bei uns?"
        ),
        "scheduling_offer": (
            "Vielen Dank für Ihre Antworten. Ich kann Ihnen folgende Termine für ein "
            "Vorstellungsgespräch anbieten: {slots}. Welcher Termin passt Ihnen am besten?"
        ),
        "scheduling_preference": (
            "Vielen Dank für Ihre Antworten. Wann würde Ihnen ein Vorstellungsgespräch am "
            "besten passen?"
        ),
        "scheduling_confirm_full": (
            "Sehr gut, Ihr Vorstellungsgespräch ist geplant: {slot}, in unserem Büro "
            "{location}, {address}."
        ),
        "scheduling_confirm_location": (
            "Sehr gut, Ihr Vorstellungsgespräch ist geplant: {slot}, in unserem Büro {location}."
        ),
        "scheduling_confirm": "Sehr gut, Ihr Vorstellungsgespräch ist geplant: {slot}.",
        "preference_noted": (
            "Danke, ich habe Ihren Wunsch notiert. Ein Recruiter bestätigt Ihnen den Termin."
        ),
        "existing_booking": "Ihr Termin ({date}) bleibt bestehen.",
        "closing_completed": (
            "Vielen Dank für Ihre Zeit. Ein Recruiter meldet sich bald bei Ihnen. "
            "Einen schönen Tag noch!"
        ),
        "closing_alternatives": (
            "Gut, wir informieren Sie über andere passende Stellen. Vielen Dank für Ihre Zeit "
            "und einen schönen Tag noch!"
        ),
        "closing_not_interested": (
            "Kein Problem. Vielen Dank für Ihre Zeit und einen schönen Tag noch!"
        ),
        "closing_consent_declined": (
            "Kein Problem, dann beenden wir das Gespräch hier. Vielen Dank für Ihre Zeit, "
            "auf Wiederhören!"
        ),
        "closing_dnc": (
            "Verstanden, wir rufen Sie nicht mehr an. Einen schönen Tag noch, auf Wiederhören!"
        ),
        "closing_unclear": (
            "Es tut mir leid, ich konnte Ihre Antwort nicht gut verstehen. Ein Recruiter wird "
            "sich bei Ihnen melden. Danke und auf Wiederhören."
        ),
        "closing_irrelevant": (
            "Wir beenden das Gespräch an dieser Stelle. Ein Recruiter prüft Ihre Bewerbung. "
            "Danke und auf Wiederhören."
        ),
        "closing_silence": (
            "Ich höre Sie leider nicht mehr. Wir rufen Sie später noch einmal an. Auf Wiederhören."
        ),
        "closing_time_up": (
            "Die Zeit für dieses Gespräch ist leider um. Wir melden uns bei Ihnen. "
            "Danke und auf Wiederhören."
        ),
        "escalation_transfer": "Ich verbinde Sie jetzt mit einem Recruiter, einen Moment bitte.",
        "escalation_callback": (
            "Ich bitte einen Recruiter, Sie zurückzurufen. Danke und auf Wiederhören."
        ),
        "voicemail_named": (
            "Guten Tag {name}, hier ist der Recruiting-Assistent, ein KI-Assistent, wegen Ihrer "
            "Bewerbung für die Stelle {job_title}. Wir rufen Sie später noch einmal an. "
            "Auf Wiederhören."
        ),
        "voicemail_generic": (
            "Guten Tag, hier ist der Recruiting-Assistent, ein KI-Assistent, wegen Ihrer "
            "Bewerbung für die Stelle {job_title}. Wir rufen Sie später noch einmal an. "
            "Auf Wiederhören."
        ),
        "default_open_question": (
            "Zum Einstieg: Können Sie kurz erzählen, welche Erfahrung Sie für die Stelle "
            "{job_title} mitbringen?"
        ),
        "list_or": "oder",
    },
}

TEMPLATED_LANGUAGES: frozenset[str] = frozenset(TEMPLATES)
FALLBACK_LANGUAGE = "en"


def template_language(language: str) -> str:
    """The language a template for `language` is written in (itself, or English)."""
    return language if language in TEMPLATES else FALLBACK_LANGUAGE


def render(language: str, key: str, **params: str) -> tuple[str, str]:
    """(text, language the text is in). Unknown keys raise KeyError; missing params too."""
    lang = template_language(language)
    return TEMPLATES[lang][key].format(**params), lang


def join_options(language: str, options: Sequence[str]) -> str:
    """ "a, b or c" in the template language."""
    items = [o.strip() for o in options if o.strip()]
    if len(items) <= 1:
        return items[0] if items else ""
    word = TEMPLATES[template_language(language)]["list_or"]
    return f"{', '.join(items[:-1])} {word} {items[-1]}"


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in Formatter().parse(text) if field}
