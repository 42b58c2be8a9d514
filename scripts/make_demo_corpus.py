#!/usr/bin/env python
"""Generate the embedded bilingual (EN/FR) clinical NER demo corpus.

The corpus is ORIGINAL: every sentence below was written for medkit_exp; it
is not taken from any real corpus and contains no real patient data.

Markup: ``[mention](label)`` with label in {problem, treatment, test}.
Each document is a list of sentences (one per line in the ``.txt``).
Running the script writes, deterministically,

    medkit_exp/ner/demo/{train,dev}/<lang>_<nnn>.txt / .ann   (BRAT standoff)
    medkit_exp/ner/demo/annotation.conf
    medkit_exp/ner/demo/README.md

and verifies every span (``text[start:end] == mention``), flatness, label
set, sentence counts and that no dev sentence appears verbatim in train.

Usage:  python scripts/make_demo_corpus.py [--check]
        (--check: build in memory, compare with the files on disk, write nothing)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

LABELS = ("problem", "treatment", "test")
OUT_DIR = Path(__file__).resolve().parents[1] / "medkit_exp" / "ner" / "demo"
MARKUP = re.compile(r"\[([^\[\]()]+)\]\((problem|treatment|test)\)")

# fmt: off
# --------------------------------------------------------------------------
# TRAIN
# --------------------------------------------------------------------------
TRAIN: list[tuple[str, str]] = [
("en", """
A 68-year-old man with a history of [hypertension](problem), [type 2 diabetes](problem) and [atrial fibrillation](problem) was admitted for worsening [shortness of breath](problem).
On arrival his [blood pressure](test) was 158/92 mmHg and his [oxygen saturation](test) was 89% on room air.
[Physical examination](test) revealed [bibasilar crackles](problem) and [bilateral leg edema](problem).
[Chest X-ray](test) showed [cardiomegaly](problem) and small [bilateral pleural effusions](problem).
[BNP](test) was markedly elevated and [troponin](test) was negative.
He was treated with [furosemide 40 mg](treatment) IV twice daily with good diuresis.
A [transthoracic echocardiogram](test) showed an [ejection fraction](test) of 30%, consistent with [congestive heart failure](problem).
"""),
("en", """
A 54-year-old woman presented with [fever](problem), [productive cough](problem) and [pleuritic chest pain](problem) for three days.
Her [temperature](test) was 39.1 °C and her [heart rate](test) was 112 beats per minute.
[Chest X-ray](test) revealed a [right lower lobe infiltrate](problem).
She was diagnosed with [community-acquired pneumonia](problem) and admitted to the medical ward.
[White blood cell count](test) was 16,000 and [CRP](test) was 180 mg/L.
[Blood cultures](test) were drawn before starting [ceftriaxone 1 g](treatment) and [azithromycin 500 mg](treatment).
She improved clinically within 48 hours and was switched to oral [amoxicillin-clavulanate](treatment).
She was discharged home to complete a seven-day course.
"""),
("en", """
The patient is seen today for follow-up of [type 2 diabetes](problem).
Her most recent [HbA1c](test) was 8.4%, up from 7.6% six months ago.
She reports [polyuria](problem) and [fatigue](problem) but denies [blurred vision](problem).
We will increase [metformin](treatment) to 1000 mg twice daily.
A [lipid panel](test) showed an [LDL](test) of 3.9 mmol/L, and [atorvastatin 20 mg](treatment) was started.
She will return to clinic in three months.
"""),
("en", """
A 23-year-old man presented to the emergency department with [right lower quadrant pain](problem), [nausea](problem) and [anorexia](problem).
[Abdominal ultrasound](test) was inconclusive, so an [abdominal CT](test) was obtained.
The [CT](test) showed [acute appendicitis](problem) without [perforation](problem).
He underwent an uncomplicated [laparoscopic appendectomy](treatment) the same evening.
[Postoperative pain](problem) was controlled with [acetaminophen](treatment) and [ibuprofen](treatment).
He was discharged on postoperative day one.
"""),
("en", """
An 81-year-old woman on [warfarin](treatment) for [atrial fibrillation](problem) was admitted with [melena](problem) and [dizziness](problem).
Her [hemoglobin](test) was 6.8 g/dL and her [INR](test) was 4.2.
[Warfarin](treatment) was held and she received [vitamin K](treatment) and two units of [packed red blood cells](treatment).
[Upper endoscopy](test) showed a [bleeding duodenal ulcer](problem), which was treated with [endoscopic clipping](treatment).
She was started on [pantoprazole 40 mg](treatment) IV twice daily.
Her [hemoglobin](test) remained stable at 9.1 g/dL over the next 48 hours.
"""),
("en", """
The patient is a 71-year-old former smoker with [severe COPD](problem) on [home oxygen](treatment).
He presented with increased [dyspnea](problem), [wheezing](problem) and [purulent sputum](problem).
[Arterial blood gas](test) showed [hypercapnia](problem) with a pH of 7.31.
He was treated with nebulized [albuterol](treatment) and [ipratropium](treatment), [prednisone 40 mg](treatment) daily and [doxycycline](treatment).
[Noninvasive ventilation](treatment) was not required.
He was discharged after five days with a referral to [pulmonary rehabilitation](treatment).
"""),
("en", """
Social history: he lives with his wife and walks with a cane.
He has never smoked and drinks alcohol occasionally.
Family history is notable for [colon cancer](problem) in his father.
He is independent in activities of daily living.
"""),
("en", """
A 76-year-old right-handed woman was brought in with sudden [left-sided weakness](problem) and [slurred speech](problem).
[Head CT](test) showed no [intracranial hemorrhage](problem).
She received [alteplase](treatment) within the treatment window.
[Brain MRI](test) the next day confirmed an [acute right MCA infarct](problem).
A [CT angiogram](test) of the neck showed a [right carotid stenosis](problem) of about 60%.
She was started on [aspirin 81 mg](treatment) and [atorvastatin 80 mg](treatment) and referred for [physical therapy](treatment).
"""),
("en", """
An 85-year-old nursing home resident was sent in for [acute confusion](problem) and [decreased oral intake](problem).
[Urinalysis](test) showed [pyuria](problem) and positive nitrites, and a [urine culture](test) was sent.
She was diagnosed with a [urinary tract infection](problem) and started on [ceftriaxone](treatment).
Her [creatinine](test) was 2.1 mg/dL, consistent with [acute kidney injury](problem) from [dehydration](problem).
She received [IV fluids](treatment) and her [creatinine](test) returned to baseline.
The [urine culture](test) confirmed the diagnosis, and she was switched to oral [ciprofloxacin](treatment).
Her [confusion](problem) resolved by day three.
"""),
("en", """
A 59-year-old man presented with [substernal chest pain](problem) radiating to the left arm and [diaphoresis](problem).
The [ECG](test) showed [inferior ST elevation](problem).
He was loaded with [aspirin](treatment) and [ticagrelor](treatment) and taken for emergent [cardiac catheterization](test).
[Coronary angiography](test) revealed a [right coronary artery occlusion](problem), which was treated with [percutaneous coronary intervention](treatment) and a [drug-eluting stent](treatment).
Peak [troponin](test) was 12,400 ng/L.
He was discharged on [aspirin 81 mg](treatment), [ticagrelor 90 mg](treatment), [metoprolol succinate 50 mg](treatment) and [atorvastatin 80 mg](treatment).
"""),
("en", """
The patient returns for a routine visit.
Her home [blood pressure](test) readings average 150/95 mmHg despite [amlodipine 5 mg](treatment).
She has no [headache](problem), [chest pain](problem) or [palpitations](problem).
[Basic metabolic panel](test) is normal, with [potassium](test) at 4.2 mmol/L.
We added [lisinopril 10 mg](treatment) daily and advised a [low-sodium diet](treatment).
Repeat [electrolytes](test) will be checked in two weeks.
"""),
("en", """
A 45-year-old woman was referred for [fatigue](problem), [weight gain](problem) and [cold intolerance](problem).
Her [TSH](test) was 18.2 mIU/L with a low [free T4](test).
These findings are consistent with [primary hypothyroidism](problem).
She was started on [levothyroxine 50 mcg](treatment) daily.
Repeat [thyroid function tests](test) are planned in six weeks.
"""),
("en", """
A 62-year-old man presented with [left calf swelling](problem) and [pleuritic chest pain](problem) one week after a long flight.
[D-dimer](test) was elevated.
[Lower extremity Doppler ultrasound](test) showed a [left popliteal deep vein thrombosis](problem).
A [CT pulmonary angiogram](test) demonstrated [bilateral segmental pulmonary emboli](problem).
He was started on [enoxaparin](treatment) and then transitioned to [apixaban 10 mg](treatment) twice daily for seven days.
He remained hemodynamically stable throughout the admission.
"""),
("en", """
Discharge medications are listed below.
Continue [metformin 500 mg](treatment) twice daily and [lisinopril 20 mg](treatment) once daily.
Stop [ibuprofen](treatment) because of [acute kidney injury](problem).
Take [acetaminophen](treatment) as needed for [pain](problem).
Return to the emergency department if you develop [fever](problem), [chest pain](problem) or [shortness of breath](problem).
Follow up with your primary care physician in one week.
"""),
("en", """
A 38-year-old woman was evaluated for [fatigue](problem) and [exertional dyspnea](problem).
[Complete blood count](test) showed a [hemoglobin](test) of 8.9 g/dL with a low [MCV](test).
[Ferritin](test) was 4 ng/mL, consistent with [iron deficiency anemia](problem).
She reports [heavy menstrual bleeding](problem) for the past year.
She was started on [ferrous sulfate 325 mg](treatment) daily and referred to gynecology.
A [pelvic ultrasound](test) showed a [uterine fibroid](problem).
"""),
("en", """
A 57-year-old man with [poorly controlled diabetes](problem) presented with [redness](problem) and [swelling of the right leg](problem).
He was [febrile](problem) and [hypotensive](problem), with a [lactate](test) of 4.1 mmol/L.
He met criteria for [sepsis](problem) secondary to [right lower extremity cellulitis](problem).
[Blood cultures](test) were obtained and [vancomycin](treatment) and [piperacillin-tazobactam](treatment) were started.
He received a 30 mL/kg bolus of [normal saline](treatment).
[Blood cultures](test) remained negative and [antibiotics](treatment) were narrowed to [cefazolin](treatment).
"""),
("en", """
A 19-year-old student with [asthma](problem) comes in for [nocturnal cough](problem) and [wheezing](problem) twice a week.
She uses her [albuterol inhaler](treatment) almost daily.
[Spirometry](test) showed [reversible airflow obstruction](problem).
We started [fluticasone-salmeterol](treatment) and reviewed inhaler technique.
She was advised to avoid known triggers such as cats and dust.
"""),
("en", """
The patient has [stage 4 chronic kidney disease](problem) secondary to [diabetic nephropathy](problem).
Today his [creatinine](test) is 3.4 mg/dL and his [eGFR](test) is 18 mL/min.
[Potassium](test) is 5.8 mmol/L, indicating [hyperkalemia](problem).
We stopped [spironolactone](treatment) and started [sodium zirconium cyclosilicate](treatment).
Options for [hemodialysis](treatment) and [kidney transplantation](treatment) were discussed with him and his family.
"""),
("en", """
A 33-year-old woman presented with a [severe headache](problem), [photophobia](problem) and [vomiting](problem).
She has a long history of [migraine](problem) and this episode was similar to previous ones.
[Neurological examination](test) was normal.
No [head CT](test) was performed.
She was given [metoclopramide](treatment), [ketorolac](treatment) and [IV fluids](treatment) with complete relief.
She was discharged with a prescription for [sumatriptan 50 mg](treatment).
"""),
("en", """
A 47-year-old man with [alcohol use disorder](problem) presented with [severe epigastric pain](problem) radiating to the back.
[Lipase](test) was 1,850 U/L and an [abdominal CT](test) showed [acute interstitial pancreatitis](problem).
He received aggressive [IV fluids](treatment) and [hydromorphone](treatment) for [pain](problem).
[Right upper quadrant ultrasound](test) showed no [gallstones](problem).
His diet was advanced on day four and he was started on [thiamine](treatment) and [folic acid](treatment).
"""),
("en", """
An 88-year-old woman sustained a [right hip fracture](problem) after a [mechanical fall](problem) at home.
[Pelvic X-ray](test) confirmed a [displaced femoral neck fracture](problem).
She underwent a [right hemiarthroplasty](treatment) on hospital day two.
Postoperatively she developed [delirium](problem), which resolved within three days.
[Enoxaparin 40 mg](treatment) daily was given for five weeks after surgery.
She was transferred to a rehabilitation facility for [physical therapy](treatment).
"""),
("en", """
A 64-year-old man presented with [fever](problem), [dry cough](problem) and [loss of smell](problem).
[SARS-CoV-2 PCR](test) was positive.
His [oxygen saturation](test) was 91% and the [chest CT](test) showed [bilateral ground-glass opacities](problem).
He was diagnosed with [COVID-19 pneumonia](problem) and received [dexamethasone 6 mg](treatment) and [supplemental oxygen](treatment).
He did not require [intubation](treatment).
He was discharged on day six after weaning off [oxygen](treatment).
"""),
("en", """
The patient reports [low mood](problem), [insomnia](problem) and [poor concentration](problem) for two months.
Her [PHQ-9](test) score is 17, consistent with [moderately severe depression](problem).
She denies [suicidal ideation](problem).
We started [sertraline 50 mg](treatment) daily and referred her for [cognitive behavioral therapy](treatment).
She will be reassessed in four weeks.
"""),
("en", """
A 52-year-old woman presented with [right upper quadrant pain](problem), [fever](problem) and [vomiting](problem) after a fatty meal.
[Murphy's sign](problem) was positive on [examination](test).
[Liver function tests](test) showed a mildly elevated [alkaline phosphatase](test).
[Abdominal ultrasound](test) demonstrated [gallstones](problem) with [gallbladder wall thickening](problem), consistent with [acute cholecystitis](problem).
She was treated with [ceftriaxone](treatment) and [metronidazole](treatment) and underwent [laparoscopic cholecystectomy](treatment) the next day.
"""),
("en", """
A 70-year-old man was found to have an [irregular pulse](problem) during a routine visit.
The [ECG](test) confirmed [atrial fibrillation](problem) with a [heart rate](test) of 128 beats per minute.
His [CHA2DS2-VASc score](test) was 3.
He was started on [metoprolol](treatment) for rate control and [apixaban 5 mg](treatment) twice daily.
An [echocardiogram](test) showed [mild mitral regurgitation](problem) and a [dilated left atrium](problem).
"""),
("en", """
A 79-year-old woman on [insulin glargine](treatment) and [glipizide](treatment) was found [unresponsive](problem) at home.
Paramedics measured a [fingerstick glucose](test) of 32 mg/dL and gave intravenous [dextrose](treatment).
She regained consciousness quickly.
Her [hypoglycemia](problem) was attributed to [glipizide](treatment) in the setting of [chronic kidney disease](problem).
[Glipizide](treatment) was discontinued and her [insulin](treatment) dose was reduced.
"""),
("en", """
Reason for consultation: preoperative assessment before a planned [total knee arthroplasty](treatment).
The patient has [osteoarthritis of the left knee](problem) limiting his walking distance.
He is a retired teacher and lives with his daughter.
His [ECG](test) and [basic metabolic panel](test) are unremarkable.
He is cleared for surgery from a medical standpoint.
"""),
("en", """
The patient is seen in clinic for [heart failure with reduced ejection fraction](problem) and [chronic kidney disease](problem).
He reports [orthopnea](problem) and [paroxysmal nocturnal dyspnea](problem) but no [chest pain](problem).
There is [pitting edema](problem) to the knees and his [weight](test) is up 2 kg.
We increased [furosemide](treatment) to 80 mg daily and continued [lisinopril](treatment) and [carvedilol](treatment).
[Sodium](test) and [potassium](test) will be rechecked in one week.
A [chest X-ray](test) showed [mild pulmonary edema](problem).
"""),
("en", """
A 29-year-old woman presented with [watery diarrhea](problem), [abdominal cramps](problem) and [low-grade fever](problem) after a family barbecue.
She had [orthostatic hypotension](problem) and her [potassium](test) was 2.9 mmol/L, consistent with [hypokalemia](problem).
[Stool cultures](test) were sent and she received [IV fluids](treatment) with [potassium chloride](treatment).
Her [diarrhea](problem) settled within two days and [antibiotics](treatment) were not needed.
She tolerated a regular diet before discharge.
"""),
("en", """
A 74-year-old man was referred for [iron deficiency anemia](problem) and intermittent [rectal bleeding](problem).
[Colonoscopy](test) showed a [cecal polyp](problem) and [sigmoid diverticulosis](problem).
The [polyp](problem) was removed by [endoscopic polypectomy](treatment).
[Histology](test) showed a [tubular adenoma](problem) without [malignancy](problem).
He was started on [ferrous sulfate](treatment) and a repeat [colonoscopy](test) is planned in three years.
"""),
("en", """
A 67-year-old woman was brought in after a brief [syncope](problem) at the supermarket.
Her [respiratory rate](test) was 18, [heart rate](test) 54 and [blood pressure](test) 96/60 mmHg.
She had recently started [metoprolol](treatment) and [amlodipine](treatment) for [hypertension](problem).
The [ECG](test) showed [sinus bradycardia](problem) without [heart block](problem).
[Metoprolol](treatment) was stopped and she had no further [lightheadedness](problem).
[Telemetry](test) overnight was unremarkable.
"""),
("en", """
A 58-year-old man with [chronic obstructive pulmonary disease](problem) presented with [cough](problem) and [sputum production](problem).
[Chest X-ray](test) showed [hyperinflation](problem) without [consolidation](problem).
He was treated with [prednisone](treatment) and [azithromycin](treatment), and [tiotropium](treatment) was added to his [albuterol](treatment).
His [peak flow](test) improved from 180 to 290 L/min before discharge.
[Steroid-induced hyperglycemia](problem) was managed with [sliding-scale insulin](treatment).
"""),
("en", """
A 55-year-old man presents with [low back pain](problem) radiating down the left leg.
He reports [numbness of the left foot](problem) but no [urinary retention](problem).
[Straight leg raise test](test) is positive on the left.
A [lumbar MRI](test) shows an [L5-S1 disc herniation](problem) compressing the left S1 root.
He is treated with [naproxen](treatment), [gabapentin 300 mg](treatment) and [physical therapy](treatment).
"""),
# ---------------------------------------------------------------- French
("fr", """
Patient de 74 ans, aux antécédents d'[hypertension artérielle](problem) et de [diabète de type 2](problem), hospitalisé pour une [dyspnée](problem) d'aggravation progressive.
À l'entrée, la [pression artérielle](test) était à 165/90 mmHg et la [saturation](test) à 90 % en air ambiant.
L'[examen clinique](test) retrouvait des [crépitants bilatéraux](problem) et des [œdèmes des membres inférieurs](problem).
La [radiographie thoracique](test) montrait une [cardiomégalie](problem) et un [épanchement pleural droit](problem).
Le [NT-proBNP](test) était à 4500 pg/mL.
Un traitement par [furosémide 40 mg](treatment) IV a été débuté avec une bonne réponse diurétique.
L'[échographie cardiaque](test) objectivait une [insuffisance cardiaque à fraction d'éjection altérée](problem).
"""),
("fr", """
Patiente de 61 ans admise pour [fièvre](problem) à 39,5 °C, [toux productive](problem) et [douleur thoracique droite](problem).
La [radiographie thoracique](test) mettait en évidence une [pneumopathie lobaire inférieure droite](problem).
La [CRP](test) était à 210 mg/L et les [leucocytes](test) à 18 G/L.
Des [hémocultures](test) ont été prélevées avant l'introduction d'[amoxicilline-acide clavulanique](treatment).
L'évolution a été favorable en 72 heures.
Le relais per os a été pris pour une durée totale de sept jours.
"""),
("fr", """
Consultation de suivi d'un [diabète de type 2 déséquilibré](problem).
L'[HbA1c](test) est à 9,1 % malgré [metformine 1000 mg](treatment) matin et soir.
Le patient se plaint de [polyurie](problem) et d'[asthénie](problem).
On introduit une [insuline glargine](treatment) au coucher, à la dose de 10 unités.
Un [bilan lipidique](test) et une [créatininémie](test) sont prescrits.
Prochain rendez-vous dans trois mois.
"""),
("fr", """
Jeune homme de 19 ans consultant aux urgences pour des [douleurs de la fosse iliaque droite](problem) et des [vomissements](problem).
L'[échographie abdominale](test) était en faveur d'une [appendicite aiguë](problem).
Une [appendicectomie par cœlioscopie](treatment) a été réalisée le soir même.
Les suites opératoires ont été simples.
La sortie a été autorisée à J2 sous [paracétamol 1 g](treatment) si besoin.
"""),
("fr", """
Patiente de 83 ans sous [apixaban](treatment) pour une [fibrillation atriale](problem), admise pour [méléna](problem) et [malaise](problem).
L'[hémoglobine](test) était à 7,2 g/dL.
Elle a été transfusée de deux [culots globulaires](treatment).
La [fibroscopie œso-gastro-duodénale](test) a retrouvé un [ulcère bulbaire](problem) non hémorragique.
Un traitement par [ésoméprazole 40 mg](treatment) a été instauré et l'[apixaban](treatment) suspendu.
"""),
("fr", """
Patient de 69 ans suivi pour une [BPCO sévère](problem) sous [oxygénothérapie](treatment) à domicile.
Il est hospitalisé pour une [exacerbation de BPCO](problem) avec [dyspnée](problem) et [expectorations purulentes](problem).
Les [gaz du sang](test) montraient une [hypercapnie](problem) à 52 mmHg.
Il a été traité par [salbutamol](treatment) en nébulisation, [prednisolone](treatment) et [amoxicilline](treatment).
Une [ventilation non invasive](treatment) a été nécessaire pendant 48 heures.
"""),
("fr", """
Le patient vit seul à domicile, au deuxième étage sans ascenseur.
Il est autonome pour les actes de la vie quotidienne.
Il bénéficie d’une aide ménagère deux fois par semaine.
Sa fille passe le voir tous les jours.
"""),
("fr", """
Patiente de 78 ans amenée pour une [hémiplégie droite](problem) et une [aphasie](problem) d'installation brutale.
Le [scanner cérébral](test) n'a pas montré d'[hémorragie intracrânienne](problem).
Une [thrombolyse](treatment) par [altéplase](treatment) a été réalisée.
L'[IRM cérébrale](test) a confirmé un [AVC ischémique sylvien gauche](problem).
L'[écho-doppler des troncs supra-aortiques](test) était normal.
Elle est sortie sous [aspirine](treatment) et [atorvastatine 40 mg](treatment) avec des séances d'[orthophonie](treatment).
"""),
("fr", """
Patiente de 34 ans consultant pour [fièvre](problem), [brûlures mictionnelles](problem) et [douleur lombaire gauche](problem).
La [bandelette urinaire](test) était positive et un [ECBU](test) a été prélevé.
Le diagnostic de [pyélonéphrite aiguë](problem) a été retenu.
Un traitement par [ceftriaxone 1 g](treatment) a été débuté puis relayé par [ciprofloxacine](treatment) per os.
L'[ECBU](test) est revenu positif, avec un germe sensible aux [fluoroquinolones](treatment).
"""),
("fr", """
Patient de 56 ans admis pour une [douleur thoracique constrictive](problem) associée à des [sueurs](problem).
L'[ECG](test) montrait un [sus-décalage du segment ST](problem) en inférieur.
Il a reçu une dose de charge d'[aspirine](treatment) et de [ticagrélor](treatment).
La [coronarographie](test) a mis en évidence une [occlusion de la coronaire droite](problem).
Une [angioplastie avec pose de stent](treatment) a été réalisée.
La [troponine](test) a culminé à 9800 ng/L.
"""),
("fr", """
Patiente de 58 ans vue pour le suivi de son [HTA](problem).
Les [mesures tensionnelles](test) à domicile sont autour de 155/95 mmHg sous [amlodipine 5 mg](treatment).
Elle ne signale ni [céphalées](problem) ni [palpitations](problem).
L'[ionogramme sanguin](test) et la [créatininémie](test) sont normaux.
Nous ajoutons [ramipril 5 mg](treatment) et conseillons un [régime hyposodé](treatment).
"""),
("fr", """
Femme de 47 ans adressée pour [asthénie](problem), [prise de poids](problem) et [frilosité](problem).
La [TSH](test) est à 15 mUI/L avec une [T4 libre](test) basse.
Le tableau est compatible avec une [hypothyroïdie périphérique](problem).
Un traitement par [lévothyroxine 50 µg](treatment) est débuté.
Un contrôle de la [TSH](test) est prévu dans six semaines.
"""),
("fr", """
Patient de 66 ans présentant une [dyspnée](problem) brutale et une [douleur basithoracique gauche](problem).
Les [D-dimères](test) étaient positifs.
L'[angioscanner thoracique](test) a confirmé une [embolie pulmonaire bilatérale](problem).
L'[écho-doppler veineux des membres inférieurs](test) retrouvait une [thrombose veineuse profonde poplitée gauche](problem).
Un traitement par [rivaroxaban](treatment) a été débuté pour une durée de six mois.
"""),
("fr", """
À la sortie, poursuivre [bisoprolol 2,5 mg](treatment) et [furosémide 40 mg](treatment) le matin.
Arrêt de l'[ibuprofène](treatment) en raison d'une [insuffisance rénale aiguë](problem).
[Paracétamol 1 g](treatment) en cas de [douleur](problem), sans dépasser 3 g par jour.
Consulter en urgence en cas de [fièvre](problem), de [douleur thoracique](problem) ou d'[essoufflement](problem).
Rendez-vous de contrôle avec le médecin traitant dans une semaine.
"""),
("fr", """
Patiente de 42 ans adressée pour [asthénie](problem) et [dyspnée d'effort](problem).
La [NFS](test) retrouve une [anémie microcytaire](problem) à 8,5 g/dL.
La [ferritinémie](test) est effondrée, en faveur d'une [carence martiale](problem).
Elle rapporte des [ménorragies](problem) depuis plusieurs mois.
Un traitement par [fer injectable](treatment) est proposé, ainsi qu'une [échographie pelvienne](test).
"""),
("fr", """
Patient de 63 ans, [diabétique](problem), admis pour un [érysipèle de la jambe gauche](problem).
Il était [fébrile](problem) à 39 °C avec une [hypotension](problem) à 85/50 mmHg.
Les [lactates](test) étaient à 3,8 mmol/L, en faveur d'un [sepsis](problem).
Après [hémocultures](test), une [antibiothérapie](treatment) par [amoxicilline](treatment) IV a été débutée.
Un [remplissage vasculaire](treatment) par [sérum physiologique](treatment) a été réalisé.
"""),
("fr", """
Patiente de 50 ans consultant pour des [douleurs de l'hypochondre droit](problem) et de la [fièvre](problem).
Le [bilan hépatique](test) montre une [cholestase modérée](problem).
L'[échographie abdominale](test) retrouve une [lithiase vésiculaire](problem) avec un [épaississement de la paroi vésiculaire](problem).
Le diagnostic de [cholécystite aiguë lithiasique](problem) est posé.
Une [cholécystectomie](treatment) est réalisée à 48 heures.
"""),
("fr", """
Le patient décrit une [humeur triste](problem), des [troubles du sommeil](problem) et une [perte d'appétit](problem) depuis deux mois.
Il n'exprime pas d'[idées suicidaires](problem).
Le score [PHQ-9](test) est à 16.
Un [épisode dépressif caractérisé](problem) est diagnostiqué et un traitement par [sertraline 50 mg](treatment) est débuté.
Un suivi en [psychothérapie](treatment) est proposé.
"""),
("fr", """
Patient de 60 ans admis pour [fièvre](problem), [toux sèche](problem) et [anosmie](problem) évoluant depuis cinq jours.
La [PCR SARS-CoV-2](test) est positive.
Le [scanner thoracique](test) montre des [opacités en verre dépoli bilatérales](problem).
Il reçoit de la [dexaméthasone 6 mg](treatment) et une [oxygénothérapie](treatment) aux lunettes à 3 L/min.
L'évolution est favorable et il sort à J7.
"""),
("fr", """
Suivi néphrologique d'une [insuffisance rénale chronique de stade 4](problem).
La [créatininémie](test) est à 290 µmol/L et le [DFG](test) estimé à 19 mL/min.
La [kaliémie](test) est à 5,9 mmol/L, témoignant d'une [hyperkaliémie](problem).
La [spironolactone](treatment) est arrêtée.
La préparation à l'[hémodialyse](treatment) est discutée avec le patient.
"""),
("fr", """
Patiente de 89 ans hospitalisée pour une [fracture du col du fémur droit](problem) après une [chute](problem) à domicile.
La [radiographie du bassin](test) confirme la [fracture](problem).
Une [prothèse intermédiaire de hanche](treatment) est posée à J1.
Les suites sont marquées par un [syndrome confusionnel](problem) résolutif en quelques jours.
Elle reçoit de l’[enoxaparine 4000 UI](treatment) par jour pendant cinq semaines.
Elle est transférée en soins de suite pour [rééducation](treatment).
"""),
("fr", """
Consultation de suivi d'une [insuffisance cardiaque](problem) chez un patient de 77 ans.
Il signale une [orthopnée](problem) et des [œdèmes des chevilles](problem) depuis une semaine.
Le [poids](test) a augmenté de 3 kg et la [kaliémie](test) est à 4,1 mmol/L.
La dose de [furosémide](treatment) est augmentée à 80 mg par jour.
Le [ramipril](treatment) et le [bisoprolol](treatment) sont poursuivis sans modification.
"""),
("fr", """
Patiente de 31 ans admise pour une [diarrhée aiguë](problem) avec [vomissements](problem) et [déshydratation](problem).
L'[ionogramme sanguin](test) retrouve une [hypokaliémie](problem) à 2,8 mmol/L et une [insuffisance rénale aiguë fonctionnelle](problem).
Elle reçoit une [réhydratation intraveineuse](treatment) et du [chlorure de potassium](treatment).
La [coproculture](test) est négative.
L'évolution est rapidement favorable sous [paracétamol](treatment) et [racécadotril](treatment).
"""),
("fr", """
Patient de 70 ans adressé pour des [rectorragies](problem) et une [anémie ferriprive](problem).
La [coloscopie](test) met en évidence un [polype du côlon droit](problem) et une [diverticulose sigmoïdienne](problem).
Une [polypectomie](treatment) est réalisée dans le même temps.
L'[analyse anatomopathologique](test) retrouve un [adénome tubuleux](problem) sans [dysplasie de haut grade](problem).
Une [supplémentation martiale](treatment) est prescrite.
"""),
("fr", """
Patiente de 72 ans adressée pour une [syncope](problem) survenue en se levant.
La [fréquence cardiaque](test) est à 48/min et la [pression artérielle](test) à 100/60 mmHg.
L'[ECG](test) montre une [bradycardie sinusale](problem) sous [bisoprolol](treatment).
Le [bisoprolol](treatment) est arrêté et le [Holter ECG](test) de 24 heures est normal.
Aucun nouveau [malaise](problem) n'est survenu.
"""),
("fr", """
Homme de 45 ans consultant pour une [colique néphrétique gauche](problem) avec [nausées](problem).
La [bandelette urinaire](test) retrouve une [hématurie microscopique](problem).
Le [scanner abdomino-pelvien](test) sans injection montre un [calcul urétéral gauche](problem) de 4 mm.
Il est soulagé par [kétoprofène](treatment) IV et [morphine](treatment).
Une [échographie rénale](test) de contrôle est prévue dans un mois.
"""),
("fr", """
Patient de 35 ans, [asthmatique](problem) connu, consultant pour une [toux nocturne](problem) et une [gêne respiratoire](problem).
Les [EFR](test) montrent un [trouble ventilatoire obstructif réversible](problem), et le [débit expiratoire de pointe](test) est mesuré à 320 L/min.
Un [traitement de fond](treatment) par [budésonide-formotérol](treatment) est instauré.
Il est conseillé d'éviter l'exposition aux allergènes connus.
"""),
]

# --------------------------------------------------------------------------
# DEV (new sentences; vocabulary deliberately overlaps with train)
# --------------------------------------------------------------------------
DEV: list[tuple[str, str]] = [
("en", """
A 79-year-old woman with known [heart failure](problem) was readmitted with [orthopnea](problem) and a 4 kg [weight gain](problem).
Her [BNP](test) was 1,900 pg/mL and [chest X-ray](test) showed [pulmonary edema](problem).
She was diuresed with IV [furosemide](treatment) and her [dyspnea](problem) improved.
[Potassium](test) dropped to 3.1 mmol/L and was replaced with oral [potassium chloride](treatment).
She was discharged on [furosemide 80 mg](treatment) daily with instructions to weigh herself every morning.
"""),
("en", """
An 82-year-old man presented with [confusion](problem), [fever](problem) and [cough](problem).
His [respiratory rate](test) was 28 and his [oxygen saturation](test) was 88%.
A [chest X-ray](test) showed a [left lower lobe consolidation](problem).
He was treated for [community-acquired pneumonia](problem) with [ceftriaxone](treatment) and [azithromycin](treatment).
[Urine antigen testing](test) was negative.
He returned to his baseline mental status by day four.
"""),
("en", """
A 50-year-old man was referred after a routine [fasting glucose](test) of 11.2 mmol/L.
He reported [thirst](problem), [frequent urination](problem) and [unintentional weight loss](problem).
His [HbA1c](test) was 9.8%, confirming [type 2 diabetes](problem).
He was started on [metformin 500 mg](treatment) twice daily and referred for diabetes education.
A [urine albumin-to-creatinine ratio](test) and a [retinal examination](test) were ordered.
"""),
("en", """
A 44-year-old man presented with a [right inguinal hernia](problem) that had become painful over several months.
[Physical examination](test) confirmed that the [hernia](problem) was reducible, with no sign of [strangulation](problem).
He underwent an elective [laparoscopic inguinal hernia repair](treatment).
He received [acetaminophen](treatment) and [oxycodone](treatment) for [postoperative pain](problem).
He was discharged the same day.
"""),
("en", """
A 66-year-old woman on [lisinopril](treatment) and [hydrochlorothiazide](treatment) presented with [diarrhea](problem) and [lightheadedness](problem).
Her [creatinine](test) was 2.6 mg/dL from a baseline of 0.9 mg/dL, consistent with [acute kidney injury](problem).
[Sodium](test) was 129 mmol/L, indicating [hyponatremia](problem).
Both [antihypertensives](treatment) were held and she received [normal saline](treatment).
Her [renal function](test) recovered within 72 hours.
"""),
("en", """
A 41-year-old warehouse worker presents with [low back pain](problem) after lifting a heavy box.
He denies [leg numbness](problem), [urinary incontinence](problem) or [fever](problem).
[Neurological examination](test) is normal and a [lumbar X-ray](test) is not needed at this stage.
We recommend [naproxen 500 mg](treatment) twice daily and [physical therapy](treatment).
He will return if there is no improvement in six weeks.
"""),
("en", """
A 73-year-old man was admitted after an episode of [syncope](problem) while standing in church.
[Orthostatic vital signs](test) were negative.
The [ECG](test) showed [complete heart block](problem) with a [heart rate](test) of 38 beats per minute.
[Telemetry](test) captured [sinus pauses](problem) of more than three seconds.
A [dual-chamber pacemaker](treatment) was implanted on hospital day two.
He had no further episodes of [dizziness](problem).
"""),
("en", """
The hospital course was otherwise uneventful.
Discharge diagnoses: [community-acquired pneumonia](problem), [hypokalemia](problem) and [chronic obstructive pulmonary disease](problem).
Discharge medications include [amoxicillin 1 g](treatment) three times daily, [tiotropium](treatment) and [potassium chloride](treatment).
A repeat [chest X-ray](test) is recommended in six weeks to document resolution.
The patient and his son understood and agreed with the plan.
"""),
("en", """
A 61-year-old woman was referred for [rectal bleeding](problem) and a [change in bowel habits](problem).
Her [hemoglobin](test) was 10.2 g/dL and her [ferritin](test) was low.
[Colonoscopy](test) revealed a [sigmoid mass](problem), and [biopsies](test) confirmed [adenocarcinoma](problem).
A [CT of the chest, abdomen and pelvis](test) showed no [metastases](problem).
She was referred for [sigmoid colectomy](treatment).
"""),
("en", """
A 27-year-old man with [asthma](problem) presented with [acute shortness of breath](problem) after a [viral illness](problem).
His [peak flow](test) was 45% of predicted.
He received nebulized [albuterol](treatment), [ipratropium](treatment) and oral [prednisone](treatment), with marked improvement.
He was discharged on a five-day course of [prednisone 40 mg](treatment) and his [controller inhaler](treatment) was stepped up.
"""),
# ---------------------------------------------------------------- French
("fr", """
Patiente de 81 ans aux antécédents d'[insuffisance cardiaque](problem), réhospitalisée pour [orthopnée](problem) et [prise de poids](problem) de 3 kg.
Le [BNP](test) était à 1200 pg/mL et la [radiographie thoracique](test) montrait un [œdème pulmonaire](problem).
Le [furosémide](treatment) IV a permis une amélioration rapide de la [dyspnée](problem).
Une [hypokaliémie](problem) à 3,2 mmol/L a été corrigée par [chlorure de potassium](treatment).
"""),
("fr", """
Patient de 86 ans, institutionnalisé, admis pour [confusion](problem) et [fièvre](problem).
La [saturation](test) était à 87 % et la [fréquence respiratoire](test) à 30/min.
Le [scanner thoracique](test) objectivait une [pneumopathie d'inhalation du lobe inférieur droit](problem).
Une [antibiothérapie](treatment) par [amoxicilline-acide clavulanique](treatment) a été instaurée.
L'état de conscience s'est normalisé en quatre jours.
"""),
("fr", """
Homme de 52 ans adressé pour une [glycémie à jeun](test) à 2,1 g/L découverte lors d'un bilan systématique.
Il décrit une [soif intense](problem) et une [perte de poids](problem) de 5 kg.
L'[HbA1c](test) à 9,4 % confirme un [diabète de type 2](problem).
Un traitement par [metformine 500 mg](treatment) matin et soir est instauré.
Un [fond d'œil](test) et une [microalbuminurie](test) sont demandés.
"""),
("fr", """
Patient de 75 ans hospitalisé pour une [syncope](problem) sans prodrome.
L'[ECG](test) retrouvait un [bloc auriculo-ventriculaire complet](problem) avec une [fréquence cardiaque](test) à 35/min.
Un [pacemaker double chambre](treatment) a été implanté le lendemain.
Il n'a pas présenté de nouveau [malaise](problem) pendant l'hospitalisation.
Retour à domicile à J3.
"""),
("fr", """
L'hospitalisation s'est déroulée sans complication.
Diagnostics de sortie : [pyélonéphrite aiguë](problem) et [insuffisance rénale aiguë fonctionnelle](problem).
Poursuivre la [ciprofloxacine 500 mg](treatment) matin et soir pendant dix jours.
Un contrôle de la [créatininémie](test) est à réaliser dans une semaine.
La patiente a bien compris les consignes de surveillance.
"""),
("fr", """
Patient de 39 ans consultant pour une [douleur lombaire droite](problem) brutale avec [hématurie](problem).
Un [scanner abdomino-pelvien](test) réalisé en urgence objective un [calcul urétéral droit](problem) de 5 mm.
Il est traité par [kétoprofène](treatment) et [paracétamol](treatment), avec une nette amélioration.
Il lui est conseillé de boire abondamment et de filtrer ses urines.
"""),
("fr", """
Patiente de 67 ans hospitalisée pour des [rectorragies abondantes](problem) et une [anémie](problem) à 7,9 g/dL.
La [coloscopie](test) retrouve une [tumeur du côlon sigmoïde](problem) dont les [biopsies](test) montrent un [adénocarcinome](problem).
Le [scanner thoraco-abdomino-pelvien](test) ne retrouve pas de [métastase](problem).
Une [colectomie sigmoïdienne](treatment) est programmée.
"""),
("fr", """
Jeune femme de 24 ans, [asthmatique](problem), vue aux urgences pour une [crise d'asthme](problem).
Le [débit expiratoire de pointe](test) est à 50 % de la valeur théorique.
Elle reçoit du [salbutamol](treatment) en nébulisation et de la [prednisolone](treatment) per os.
Le [traitement de fond](treatment) est renforcé à la sortie.
"""),
]
# fmt: on

# --------------------------------------------------------------------------
README_TEMPLATE = """\
# medkit_exp bilingual clinical NER demo corpus

A small **original** corpus of clinical sentences in English and French,
written from scratch for the medkit_exp project (fictional patients, no real
patient data, nothing copied from existing corpora). It is the default
training set of the NER demo: tiny, but consistently annotated so that a
small encoder learns it in a couple of minutes on CPU.

Generated by `scripts/make_demo_corpus.py` (do not edit these files by hand;
edit the script and re-run it — the output is deterministic).

## Format

BRAT standoff: `train/*.txt` + `train/*.ann`, `dev/*.txt` + `dev/*.ann`,
one sentence per line, entity (`T`) lines only, flat contiguous spans;
entity types declared in `annotation.conf`.

## Counts

{counts}

## Labels

- `problem`: diseases, symptoms, signs, abnormal findings (*chest pain*, *type 2 diabetes*, *fièvre*, *insuffisance cardiaque*)
- `treatment`: drugs, procedures and therapies given to treat (*metformin 500 mg*, *appendectomy*, *amoxicilline*, *IV fluids*)
- `test`: exams, lab tests, imaging, measurements and scores (*chest X-ray*, *HbA1c*, *scanner thoracique*, *NFS*, *blood pressure*)

## Annotation guidelines (i2b2-2010-like)

1. Annotate every mention, including negated, hypothetical and anaphoric ones ("no [fever]", "the [CT] showed").
2. Exclude determiners, possessives and French elided articles: "l'[hypertension artérielle]", "d'une [pneumopathie]".
3. Include modifiers that are part of the concept: severity (*severe*, *mild*, *sévère*, *intense*, *modérée*), laterality, body site (*right lower lobe*, *de la jambe gauche*), type/stage (*acute*, *chronic*, *stage 4*, *de type 2*).
4. Exclude course and certainty words: *worsening*, *new*, *history of*, *possible*; "worsening [shortness of breath]".
5. Drugs: include strength directly attached (*metformin 500 mg*, *bisoprolol 2,5 mg*); exclude route, frequency and duration (*IV*, *twice daily*, *pendant dix jours*).
6. Tests: annotate the test name only, not its value or result (*[HbA1c] was 8.4%*, *la [CRP] était à 210 mg/L*); keep the body site in the name (*chest X-ray*, *radiographie du bassin*).
7. Adjectival forms of problems are problems (*febrile*, *hypotensive*, *diabétique*, *asthmatique*).
8. Generic drug classes and therapies are treatments (*antibiotics*, *antibiothérapie*, *oxygénothérapie*, *low-sodium diet*).
9. A diagnostic procedure is a `test` (*colonoscopy*, *coronarographie*, *biopsies*); a therapeutic one is a `treatment` (*appendectomy*, *angioplastie*).
10. Spans are flat: no nesting and no overlap; the longest concept wins ("[insuffisance cardiaque à fraction d'éjection altérée]").

## Licence

Same as the medkit_exp project: MIT.
"""

ANNOTATION_CONF = """\
[entities]
problem
treatment
test

[relations]

[events]

[attributes]
"""


def parse_sentence(marked: str) -> tuple[str, list[tuple[int, int, str, str]]]:
    """Strip inline markup; return plain text and (start, end, label, mention)."""
    out: list[str] = []
    spans: list[tuple[int, int, str, str]] = []
    pos = 0
    length = 0
    for m in MARKUP.finditer(marked):
        before = marked[pos : m.start()]
        out.append(before)
        length += len(before)
        mention, label = m.group(1), m.group(2)
        if mention != mention.strip():
            raise ValueError(f"mention with outer whitespace: {mention!r} in {marked!r}")
        spans.append((length, length + len(mention), label, mention))
        out.append(mention)
        length += len(mention)
        pos = m.end()
    out.append(marked[pos:])
    text = "".join(out)
    for ch in "[]":
        if ch in text:
            raise ValueError(f"unbalanced or malformed markup in: {marked!r}")
    if "](" in marked and len(spans) != marked.count("]("):
        raise ValueError(f"malformed markup in: {marked!r}")
    return text, spans


def build_split(docs: list[tuple[str, str]]) -> dict[str, dict]:
    """Return {doc_name: {"lang", "text", "ann", "sentences", "entities"}}."""
    counters: dict[str, int] = {}
    result: dict[str, dict] = {}
    for lang, block in docs:
        assert lang in ("en", "fr"), lang
        counters[lang] = counters.get(lang, 0) + 1
        name = f"{lang}_{counters[lang]:03d}"
        lines = [ln.strip() for ln in block.strip().splitlines() if ln.strip()]
        if not 3 <= len(lines) <= 8:
            raise ValueError(f"{name}: {len(lines)} sentences (expected 3..8)")
        sentences: list[str] = []
        entities: list[tuple[int, int, str, str]] = []
        offset = 0
        for line in lines:
            text, spans = parse_sentence(line)
            sentences.append(text)
            entities.extend((offset + s, offset + e, lab, men) for s, e, lab, men in spans)
            offset += len(text) + 1  # "\n"
        full = "\n".join(sentences) + "\n"
        # verification
        prev_end = -1
        for start, end, label, mention in entities:
            assert label in LABELS, label
            if full[start:end] != mention:
                raise AssertionError(f"{name}: span mismatch {full[start:end]!r} != {mention!r}")
            if start < prev_end:
                raise AssertionError(f"{name}: overlapping spans at {start}")
            if "\n" in mention:
                raise AssertionError(f"{name}: multi-line mention {mention!r}")
            prev_end = end
        ann = "".join(
            f"T{i}\t{label} {start} {end}\t{mention}\n"
            for i, (start, end, label, mention) in enumerate(entities, 1)
        )
        result[name] = {
            "lang": lang,
            "text": full,
            "ann": ann,
            "sentences": sentences,
            "entities": entities,
        }
    return result


def consistency_warnings(splits: dict[str, dict[str, dict]]) -> list[str]:
    """Surface forms annotated somewhere but left unannotated elsewhere."""
    forms: dict[str, str] = {}
    for docs in splits.values():
        for doc in docs.values():
            for _, _, label, mention in doc["entities"]:
                forms.setdefault(mention.lower(), label)
    warnings = []
    for split, docs in splits.items():
        for name, doc in docs.items():
            covered = [False] * len(doc["text"])
            for s, e, _, _ in doc["entities"]:
                for i in range(s, e):
                    covered[i] = True
            low = doc["text"].lower()
            for form in forms:
                for m in re.finditer(r"(?<![\w-])" + re.escape(form) + r"(?![\w-])", low):
                    if not any(covered[m.start() : m.end()]):
                        warnings.append(f"{split}/{name}: unannotated {form!r}")
    return warnings


def build() -> tuple[dict[str, str], dict]:
    splits = {"train": build_split(TRAIN), "dev": build_split(DEV)}
    train_sents = {s for d in splits["train"].values() for s in d["sentences"]}
    dup = [s for d in splits["dev"].values() for s in d["sentences"] if s in train_sents]
    if dup:
        raise AssertionError(f"dev sentences copied from train: {dup}")
    for split, docs in splits.items():
        seen: set[str] = set()
        for name, doc in docs.items():
            for s in doc["sentences"]:
                if s in seen:
                    raise AssertionError(f"{split}/{name}: duplicated sentence {s!r}")
                seen.add(s)

    stats: dict = {}
    rows = ["| split | docs (en/fr) | sentences (en/fr) | problem | treatment | test | total |",
            "|---|---|---|---|---|---|---|"]
    for split, docs in splits.items():
        ndoc = {lang: sum(d["lang"] == lang for d in docs.values()) for lang in ("en", "fr")}
        nsent = {lang: sum(len(d["sentences"]) for d in docs.values() if d["lang"] == lang)
                 for lang in ("en", "fr")}
        nlab = {lab: sum(e[2] == lab for d in docs.values() for e in d["entities"]) for lab in LABELS}
        stats[split] = {"docs": ndoc, "sentences": nsent, "labels": nlab}
        rows.append(
            f"| {split} | {sum(ndoc.values())} ({ndoc['en']}/{ndoc['fr']}) "
            f"| {sum(nsent.values())} ({nsent['en']}/{nsent['fr']}) "
            f"| {nlab['problem']} | {nlab['treatment']} | {nlab['test']} | {sum(nlab.values())} |"
        )
    if sum(stats["train"]["sentences"].values()) < 230 or sum(stats["dev"]["sentences"].values()) < 75:
        raise AssertionError(f"not enough sentences: {stats}")

    files: dict[str, str] = {
        "annotation.conf": ANNOTATION_CONF,
        "README.md": README_TEMPLATE.format(counts="\n".join(rows)),
    }
    for split, docs in splits.items():
        for name, doc in docs.items():
            files[f"{split}/{name}.txt"] = doc["text"]
            files[f"{split}/{name}.ann"] = doc["ann"]
    stats["warnings"] = consistency_warnings(splits)
    return files, stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with files on disk, write nothing")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)

    files, stats = build()
    for w in stats["warnings"]:
        print("warning:", w, file=sys.stderr)

    existing = {
        str(p.relative_to(args.out)).replace("\\", "/")
        for split in ("train", "dev")
        for p in sorted((args.out / split).glob("*"))
        if p.suffix in (".txt", ".ann")
    } if args.out.exists() else set()

    if args.check:
        stale = existing - set(files)
        differ = [rel for rel, content in files.items()
                  if not (args.out / rel).exists()
                  or (args.out / rel).read_text(encoding="utf-8") != content]
        if stale or differ:
            print(f"out of date: differ={differ} stale={sorted(stale)}", file=sys.stderr)
            return 1
        print("demo corpus up to date")
        return 0

    for rel in sorted(existing - set(files)):
        (args.out / rel).unlink()
    for rel, content in sorted(files.items()):
        path = args.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(content)
    for split in ("train", "dev"):
        s = stats[split]
        print(f"{split}: docs={s['docs']} sentences={s['sentences']} entities={s['labels']}")
    print(f"wrote {len(files)} files under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
