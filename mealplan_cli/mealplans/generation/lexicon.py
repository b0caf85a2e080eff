"""What words give away: the allergen and diet lexicon every free text is read against.

The nutrition table says what its own foods contain. Text says more: a title "Peanut Satay
Bowl", a step "scatter toasted almonds", a display name "caesar dressing". Each phrase here maps
to the allergen families and diet flags it implies, including prepared and compound foods whose
allergen is not in the word (satay is peanut, za'atar is sesame, lo mein is wheat). Matching is
longest phrase first, so a phrase listed here or in the table wins over its parts: "almond milk"
is a tree nut and no dairy, "coconut milk" is neither. That is the only way a qualifier changes
what a word means: "dairy butter", "high-gluten flour" and "lactose-free milk" have no entry of
their own, so their parts are read, and each part counts.

``FREE_FROM`` lists the qualified forms that do drop an allergen; nothing else does.
"""

from __future__ import annotations

from mealplan_cli.mealplans.generation.vocabulary import Allergen

A = Allergen
Entry = tuple[frozenset[Allergen], frozenset[str]]

LEXICON: dict[str, Entry] = {}


def _add(phrases: str, allergens: tuple[Allergen, ...] = (), flags: tuple[str, ...] = ()) -> None:
    """Register each comma-separated phrase of ``phrases``."""
    for phrase in phrases.split(","):
        phrase = phrase.strip()
        if phrase:
            old_allergens, old_flags = LEXICON.get(phrase, (frozenset(), frozenset()))
            LEXICON[phrase] = (old_allergens | set(allergens), old_flags | set(flags))


# --- single words and plain foods -------------------------------------------------------------
_add(
    "wheat, flour, bread, breadcrumb, panko, pasta, spaghetti, linguine, penne, fettuccine, "
    "macaroni, lasagna, lasagne, couscous, bulgur, bulgar, barley, rye, spelt, seitan, semolina, "
    "farro, khorasan, kamut, durum, crouton, cracker, pita, pitta, naan, bagel, brioche, "
    "croissant, udon, ramen, orzo, gnocchi, tortellini, ravioli, malt, noodle, gluten, bun, "
    "tortilla, dumpling, wonton, gyoza, pastry, cookie, biscuit, "
    "pizza, baguette, ciabatta, focaccia, sourdough, "
    "breadstick, pretzel, strudel, flatbread, chapati, roti, paratha, bao, cereal, "
    "graham, freekeh, triticale, einkorn, emmer, matzo, phyllo, filo, puff pastry, "
    "tempura, roux, stuffing, seitan",
    (A.gluten,),
    ("grain",),
)
_add("oat, oatmeal, granola, muesli, oatcake", (A.gluten,), ("grain",))
_add(
    "rice, quinoa, millet, buckwheat, corn, polenta, cornmeal, sorghum, teff, amaranth, grits",
    (),
    ("grain",),
)
_add(
    "milk, cheese, butter, cream, yogurt, yoghurt, ghee, whey, casein, caseinate, kefir, "
    "lactose, dairy, curd, custard, buttermilk, quark, skyr, labneh, labna, ricotta, "
    "mozzarella, burrata, cheddar, feta, halloumi, paneer, mascarpone, brie, camembert, gouda, "
    "edam, colby, queso, creme fraiche, fromage frais, cottage cheese, cream cheese, "
    "milk powder, lassi, raita, tzatziki, bechamel, alfredo, carbonara, hollandaise, "
    "bearnaise, gelato, ice cream, kulfi, cheesecake, rice pudding, panna cotta, tiramisu, "
    "fondue, mac and cheese, queso fundido, khoa, khoya, malai, rabri, kheer, dulce de leche, "
    "latte, cappuccino, milkshake, eggnog, white chocolate, "
    "milk chocolate, chocolate milk, nougat",
    (A.milk,),
    ("dairy",),
)
_add(
    "parmesan, parmigiano, parmigiano reggiano, grana padano, pecorino, gruyere, emmental, "
    "emmentaler, comte, gorgonzola, roquefort, stilton, manchego, asiago, provolone, "
    "taleggio, fontina, raclette, reblochon, beaufort, appenzeller, sbrinz",
    (A.milk,),
    ("dairy", "rennet"),
)
_add("rennet, animal rennet, calf rennet", (), ("rennet",))
_add(
    "egg, mayonnaise, mayo, aioli, meringue, frittata, omelette, omelet, quiche, souffle, "
    "custard, eggnog, shakshuka, tamagoyaki, carbonara, hollandaise, bearnaise, brioche, "
    "challah, egg noodle, lo mein, chow mein, pavlova, macaron, albumen, albumin, ovalbumin, "
    "lysozyme, tartar sauce, tartare sauce, remoulade, caesar dressing, caesar salad, "
    "ranch dressing, thousand island, zabaglione, creme brulee, flan, french toast, "
    "eggs benedict, kedgeree, egg fried rice, fried rice",
    (A.eggs,),
    ("egg",),
)
_add(
    "shrimp, prawn, crab, lobster, crayfish, crawfish, crawdad, langoustine, langostino, "
    "krill, scampi, shrimp paste, belacan, kapi, dried shrimp, prawn cracker, bisque, "
    "crab stick, seafood, seafood mix, gumbo, jambalaya, tom yum, laksa, "
    "curry paste, red curry, green curry, yellow curry, massaman, panang",
    (A.crustaceans,),
    ("shellfish",),
)
_add(
    "mussel, clam, oyster, scallop, squid, octopus, calamari, snail, escargot, cockle, "
    "whelk, abalone, cuttlefish, periwinkle, conch, geoduck, oyster sauce, seafood, "
    "seafood mix, vongole, frutti di mare",
    (A.molluscs,),
    ("shellfish",),
)
_add(
    "fish, salmon, tuna, cod, anchovy, sardine, mackerel, trout, tilapia, halibut, haddock, "
    "pollock, snapper, herring, swordfish, catfish, bass, sole, monkfish, worcestershire, "
    "worcester sauce, bonito, dashi, fish sauce, nam pla, nuoc mam, anchovy paste, "
    "caesar dressing, caesar salad, puttanesca, kedgeree, katsuobushi, furikake, surimi, "
    "crab stick, caviar, roe, ikura, tobiko, lox, gravlax, kipper, eel, unagi, pike, perch, "
    "carp, mahi, mahi mahi, barramundi, branzino, seabass, sea bream, bream, plaice, turbot, "
    "hake, skate, whitebait, pilchard, sprat, kimchi, tom yum, laksa, bouillabaisse, "
    "cioppino, seafood, fish stock, fish finger, fish cake, poke, sashimi, nicoise, "
    "tapenade, green curry, red curry, panang, massaman, xo sauce",
    (A.fish,),
    ("fish",),
)
_add(
    "peanut, groundnut, monkey nut, satay, sate, peanut sauce, gado gado, "
    "kung pao, mafe, maafe, groundnut stew, arachis, arachide, goober, massaman, "
    "peanut brittle, pb&j, pbj",
    (A.peanuts,),
    ("legume",),
)
_add(
    "almond, cashew, walnut, pecan, pistachio, hazelnut, filbert, macadamia, brazil, "
    "brazil nut, praline, marzipan, frangipane, nutella, gianduja, gianduia, amaretto, "
    "amaretti, baklava, nougat, pesto, romesco, dukkah, dukka, korma, pasanda, "
    "pine nut, pignoli, chestnut, nut, nut butter, mixed nut, nut milk, "
    "nougatine, financier, biscotti, florentine, muhammara, tarator, praliné, orgeat, "
    "frangelico, noyau, bakewell",
    (A.tree_nuts,),
)
_add("pesto, pesto genovese", (A.tree_nuts, A.milk), ("dairy",))
_add(
    "sesame, tahini, tahina, halva, halvah, halwa, za'atar, zaatar, zatar, za atar, gomasio, "
    "gomashio, benne, furikake, hummus, houmous, hummous, baba ganoush, baba ghanoush, "
    "goma, sesame oil, bagel, dukkah, dukka, tarator, shichimi, togarashi, hoisin",
    (A.sesame,),
)
_add(
    "soy, soya, soybean, tofu, tempeh, tempe, miso, edamame, tamari, natto, shoyu, yuba, "
    "okara, tvp, bean curd, soy sauce, teriyaki, hoisin, gochujang, doenjang, doubanjiang, "
    "black bean sauce, ponzu, yakitori, mapo, kecap manis, lecithin, bulgogi",
    (A.soybeans,),
    ("legume",),
)
_add(
    "celery, celeriac, celery salt, celery seed, stock, broth, bouillon, stock cube, "
    "bouillon cube, mirepoix, soffritto, sofrito, waldorf, bloody mary, "
    "old bay, bone broth, consomme, ramen broth",
    (A.celery,),
)
_add(
    "mustard, mustard seed, mustard oil, mustard green, dijon, wholegrain mustard, "
    "english mustard, honey mustard, piccalilli, remoulade, vinaigrette, "
    "panch phoron, tadka, tarka, mustard powder, ras el hanout, "
    "curry powder, thousand island",
    (A.mustard,),
)
_add(
    "wine, sulphite, sulfite, sherry, port, marsala, madeira, vermouth, champagne, prosecco, "
    "cava, cider, vinegar, balsamic, dried apricot, dried fruit, sauerkraut, "
    "metabisulphite, metabisulfite, sulphur dioxide, sulfur dioxide, brandy, cognac, "
    "mirin, sake, shaoxing, rice wine, cooking wine, verjuice, molasses",
    (A.sulphites,),
)
_add(
    "wine, sherry, port, marsala, madeira, vermouth, champagne, prosecco, cava, cider, brandy, "
    "cognac, beer, lager, ale, stout, rum, vodka, gin, whisky, whiskey, tequila, liqueur, "
    "sake, shaoxing, rice wine, cooking wine, kirsch, amaretto, frangelico",
    (),
    ("alcohol",),
)
_add("beer, lager, ale, stout, malt vinegar, malt", (A.gluten,), ("grain",))
_add("lupin, lupine, lupini, lupin flour, lupini bean, lupine flour", (A.lupin,), ("legume",))
_add(
    "beef, pork, lamb, veal, venison, mutton, goat, gelatin, gelatine, lard, "
    "ground meat, minced meat, meat, bone broth, beef stock, beef broth, "
    "beef tallow, tallow, suet, dripping, bone marrow, oxtail, brisket, ribs, rib, "
    "pastrami, corned beef, jerky, biltong, liver",
    (),
    ("meat",),
)
_add(
    "bacon, ham, sausage, chorizo, salami, pepperoni, prosciutto, pancetta, hotdog, hot dog, "
    "guanciale, lardon, mortadella, bresaola, speck, frankfurter, bratwurst, kielbasa, "
    "nduja, spam, coppa, capicola, merguez, boerewors, black pudding, blood sausage",
    (),
    ("meat", "processed"),
)
_add(
    "chicken, turkey, duck, goose, quail, pheasant, poultry, chicken stock, chicken broth, "
    "chicken bouillon, schmaltz, foie gras, giblets, chicken liver",
    (),
    ("poultry",),
)
_add("honey, honeycomb, mead, royal jelly, propolis, bee pollen", (), ("honey",))
_add(
    "bean, lentil, chickpea, pea, dal, dhal, daal, hummus, falafel, split pea, mung, "
    "black-eyed pea, kidney bean, pinto, cannellini, borlotti",
    (),
    ("legume",),
)
_add(
    "sugar, syrup, candy, caramel, jam, marmalade, jelly, fudge, toffee, icing, frosting, "
    "brownie, molasses, treacle, nutella",
    (),
    ("added_sugar",),
)
_add("potato, plantain, yam, cassava, hash brown, potato crisps, french fries", (), ("starchy",))
_add("vegetarian worcestershire", (A.gluten,), ())

# Names that contain an allergen word but are none of it, and plant "milks" named by their source.
_add("coconut, coconut milk, coconut cream, coconut yogurt, coconut butter, coconut oil", ())
_add("butternut, butternut squash, nutmeg, cream of tartar, cocoa butter, shea butter", ())
_add("peanut butter", (A.peanuts,), ("legume",))
_add("almond milk, almond cream, almond butter, almond yogurt", (A.tree_nuts,))
_add("almondmilk", (A.tree_nuts,))
_add("cashew milk, cashew cream, cashew cheese, cashew butter, cashew yogurt", (A.tree_nuts,))
_add("oat milk, oat cream, oatmilk, oat drink", (A.gluten,), ("grain",))
_add("soy milk, soya milk, soymilk, soy yogurt, soy cream", (A.soybeans,), ("legume",))
_add("rice milk, rice drink", (), ("grain",))
_add("hemp milk, pea milk", ())
_add("water chestnut, horse chestnut", ())
_add("sunflower butter, sunflower seed butter, pumpkin seed butter", ())
_add("eggplant, egg plant", ())
_add("apple butter, fruit butter", (), ("added_sugar",))
_add("cream of coconut", ())
_add(
    "zucchini noodle, courgette noodle, zoodle, courgetti, vegetable noodle, cauliflower grit",
    (),
)
_add("spanish tortilla, tortilla de patata, tortilla espanola", (A.eggs,), ("egg",))
_add("pad thai", (A.peanuts, A.eggs), ("legume", "egg"))

FREE_FROM: dict[str, Entry] = {}
"""The qualified forms that drop an allergen, each listed explicitly: nothing else does."""


def _free(phrases: str, allergens: tuple[Allergen, ...] = (), flags: tuple[str, ...] = ()) -> None:
    for phrase in phrases.split(","):
        phrase = phrase.strip()
        FREE_FROM[phrase] = (frozenset(allergens), frozenset(flags))
        LEXICON[phrase] = FREE_FROM[phrase]


_free("gluten free oat, gluten free rolled oat, certified gluten free oat", (), ("grain",))
_free(
    "gluten free pasta, gluten free spaghetti, gluten free bread, gluten free flour, "
    "gluten free tortilla, gluten free noodle",
    (),
    ("grain",),
)
_free("vegan mayo, vegan mayonnaise, egg free mayonnaise, eggless mayonnaise", (A.soybeans,))
_free("dairy free cheese, vegan cheese", (A.tree_nuts, A.soybeans))
_free("vegan butter, dairy free butter, plant butter", (A.soybeans,))
_free("fish free kimchi, vegan kimchi", ())
_free("vegetarian hard cheese, vegetarian rennet", (A.milk,), ("dairy",))
_free("vegan pesto", (A.tree_nuts,))
_free("vegan worcestershire sauce", (A.gluten,), ("grain",))

# A bare claim ("a nut-free trail mix", "dairy-free smoothie") names no food; only the claim's
# own words are consumed, so the noun after it is still read ("dairy-free yogurt" is milk).
_free(
    "nut free, tree nut free, peanut free, dairy free, milk free, lactose free, gluten free, "
    "wheat free, egg free, soy free, sesame free, sugar free, grain free, meat free, fish free"
)

# Phrases whose qualifier never cancels the allergen (listed so they read as one hit with a name).
_add("lactose free milk, lactose free yogurt, lactose free cheese", (A.milk,), ("dairy",))
_add("a2 milk, goat milk, sheep milk, buffalo milk", (A.milk,), ("dairy",))

PROTEIN_FAMILIES: dict[str, str] = {}
"""Word in a main-protein name -> its family, for the "not three days running" rule."""

for _family, _words in {
    "tofu": "tofu, beancurd",
    "tempeh": "tempeh, tempe",
    "soy": "edamame, soy, soya, tvp",
    "seitan": "seitan",
    "salmon": "salmon, lox, gravlax",
    "tuna": "tuna, ahi",
    "white fish": "cod, haddock, hake, pollock, tilapia, halibut, sea bass, bass, white fish, "
    "whitefish, sole, snapper",
    "oily fish": "mackerel, sardine, trout, herring, anchovy",
    "shellfish": "shrimp, prawn, crab, lobster, scallop, mussel, clam, squid, oyster",
    "lentil": "lentil, dal, dhal, daal",
    "chickpea": "chickpea, garbanzo, hummus, falafel",
    "bean": "bean, black bean, kidney bean, white bean, pinto, cannellini, edamame bean",
    "chicken": "chicken",
    "turkey": "turkey",
    "duck": "duck",
    "beef": "beef, steak, sirloin, ribeye, brisket",
    "pork": "pork, bacon, ham, chorizo, sausage, prosciutto",
    "lamb": "lamb, mutton",
    "egg": "egg, omelette, frittata",
    "yogurt": "yogurt, yoghurt, skyr",
    "cheese": "cheese, paneer, halloumi, ricotta, feta, cottage cheese, mozzarella",
    "pea protein": "pea protein",
    "peanut": "peanut",
}.items():
    for _word in _words.split(","):
        PROTEIN_FAMILIES[_word.strip()] = _family
