/*
 * openmm_cgml: the compiled tabulated pair force (see CGPairTableForce.h), its implementation, its
 * serialization proxy and a small C interface for ctypes.
 */
#include "CGPairTableForce.h"
#include "CGPairTableKernels.h"
#include "CGPluginCommon.h"
#include "CGVerletList.h"
#include "openmm/CustomNonbondedForce.h"
#include "openmm/NonbondedForce.h"
#include "openmm/OpenMMException.h"
#include "openmm/internal/AssertionUtilities.h"
#include "openmm/internal/ContextImpl.h"
#include "openmm/internal/CustomCPPForceImpl.h"
#include "openmm/internal/SplineFitter.h"
#include "openmm/internal/ThreadPool.h"
#include "openmm/serialization/SerializationNode.h"
#include "openmm/serialization/SerializationProxy.h"
#include <algorithm>
#include <cmath>
#include <functional>
#include <cstdint>
#include <memory>
#include <set>
#include <sstream>
#include <typeinfo>
#include <string>

using namespace OpenMM;
using namespace std;

namespace OpenMMCGML {

static pair<int, int> ordered(int a, int b) { return a <= b ? make_pair(a, b) : make_pair(b, a); }

int CGPairTableForce::addParticle(int type) {
    if (type < 0)
        throw OpenMMException("CGPairTableForce: a particle's type must be >= 0");
    particleTypes.push_back(type);
    return (int) particleTypes.size() - 1;
}

int CGPairTableForce::getParticleType(int index) const {
    ASSERT_VALID_INDEX(index, particleTypes);
    return particleTypes[index];
}

void CGPairTableForce::setParticleType(int index, int type) {
    ASSERT_VALID_INDEX(index, particleTypes);
    if (type < 0)
        throw OpenMMException("CGPairTableForce: a particle's type must be >= 0");
    particleTypes[index] = type;
}

void CGPairTableForce::setNumTypes(int n) {
    if (n < 1)
        throw OpenMMException("CGPairTableForce: the number of types must be >= 1");
    numTypes = n;
}

int CGPairTableForce::addExclusion(int particle1, int particle2) {
    exclusions.push_back(ordered(particle1, particle2));
    return (int) exclusions.size() - 1;
}

void CGPairTableForce::getExclusionParticles(int index, int& particle1, int& particle2) const {
    ASSERT_VALID_INDEX(index, exclusions);
    particle1 = exclusions[index].first;
    particle2 = exclusions[index].second;
}

void CGPairTableForce::setTable(int type1, int type2, const vector<double>& values) {
    if (type1 < 0 || type2 < 0)
        throw OpenMMException("CGPairTableForce: table types must be >= 0");
    if (values.size() < 4)
        throw OpenMMException("CGPairTableForce: a table needs at least 4 values");
    for (double v : values)
        if (!std::isfinite(v))
            throw OpenMMException("CGPairTableForce: a table contains NaN or infinite values");
    tables[ordered(type1, type2)] = values;
}

bool CGPairTableForce::hasTable(int type1, int type2) const {
    return tables.count(ordered(type1, type2)) > 0;
}

const vector<double>& CGPairTableForce::getTable(int type1, int type2) const {
    auto it = tables.find(ordered(type1, type2));
    if (it == tables.end())
        throw OpenMMException("CGPairTableForce: no table for this type pair");
    return it->second;
}

vector<pair<int, int> > CGPairTableForce::getTablePairs() const {
    vector<pair<int, int> > out;
    for (auto& t : tables)
        out.push_back(t.first);
    return out;
}

void CGPairTableForce::setCutoffDistance(double distance) {
    if (!(distance > 0))
        throw OpenMMException("CGPairTableForce: the cutoff must be positive");
    cutoff = distance;
}

void CGPairTableForce::setNeighborSkin(double distance) {
    if (!(distance >= 0))
        throw OpenMMException("CGPairTableForce: the neighbour-list skin must be >= 0");
    skin = distance;
}

/* ------------------------------------------------------------------------------------------------------------ */

class CGPairTableForceImpl : public CustomCPPForceImpl {
public:
    CGPairTableForceImpl(const CGPairTableForce& owner) : CustomCPPForceImpl(owner), owner(owner) {}
    const CGPairTableForce& getOwner() const { return owner; }
    void initialize(ContextImpl& context);
    double calcForcesAndEnergy(ContextImpl& context, bool includeForces, bool includeEnergy, int groups);
    double computeForce(ContextImpl& context, const vector<Vec3>& positions, vector<Vec3>& forces);
    void updateParametersInContext(ContextImpl& context);
    long long numBuilds() const { return list.numBuilds; }
    bool onDevice() const { return device; }
    const string& hostReason() const { return whyHost; }
private:
    void setTables();
    double computeRows(int first, int last, vector<Vec3>& forces) const;
    const CGPairTableForce& owner;
    bool device = false;                     // the platform's device kernel evaluates the force
    string whyHost;                          // why not, where the platform has the device kernel
    Kernel deviceKernel;
    int n = 0, nt = 0, nIntervals = 0;
    double cutoff = 0, skin = 0, invH = 0;
    bool periodic = true;
    vector<int> types, pairTable;            // pairTable[ti*nt+tj]: table index or -1
    vector<double> coef;                     // per table, per interval: c0..c3 of the cubic in t
    vector<vector<int> > excluded;           // sorted, per particle (partners with a larger index)
    VerletList list;                         // each pair's tag: its table
    // threads: the CPU platform's count ("Threads"); each sums its rows' forces into its own array
    unique_ptr<ThreadPool> pool;
    vector<vector<Vec3> > threadForces;
};

ForceImpl* CGPairTableForce::createImpl() const { return new CGPairTableForceImpl(*this); }

long long CGPairTableForce::getNumListBuilds(Context& context) {
    return dynamic_cast<CGPairTableForceImpl&>(getImplInContext(context)).numBuilds();
}

bool CGPairTableForce::runsOnDevice(Context& context) {
    return dynamic_cast<CGPairTableForceImpl&>(getImplInContext(context)).onDevice();
}

string CGPairTableForce::getHostReason(Context& context) {
    return dynamic_cast<CGPairTableForceImpl&>(getImplInContext(context)).hostReason();
}

void CGPairTableForce::updateParametersInContext(Context& context) {
    dynamic_cast<CGPairTableForceImpl&>(getImplInContext(context)).updateParametersInContext(getContextImpl(context));
}

PairTables buildPairTables(const CGPairTableForce& force, int numIntervals) {
    PairTables out;
    const int nt = force.getNumTypes();
    if (nt < 1)
        throw OpenMMException("CGPairTableForce: setNumTypes() was not called");
    for (int i = 0; i < force.getNumParticles(); i++)
        if (force.getParticleType(i) >= nt)
            throw OpenMMException("CGPairTableForce: a particle's type is >= the number of types");
    auto pairs = force.getTablePairs();
    size_t npts = 0;
    for (auto& p : pairs) {
        if (p.second >= nt)
            throw OpenMMException("CGPairTableForce: a table's type is >= the number of types");
        size_t m = force.getTable(p.first, p.second).size();
        if (npts == 0)
            npts = m;
        else if (m != npts)
            throw OpenMMException("CGPairTableForce: every table must have the same number of values");
    }
    if (pairs.empty())
        npts = 4;   // no tables: no pair interacts
    if (numIntervals != 0 && (int) npts - 1 != numIntervals)
        throw OpenMMException("CGPairTableForce: updateParametersInContext cannot change the table length");
    if (pairs.size() > 65535)
        throw OpenMMException("CGPairTableForce: at most 65535 tables");
    out.numTypes = nt;
    out.numIntervals = (int) npts - 1;
    const double h = force.getCutoffDistance() / out.numIntervals;
    out.invH = 1.0 / h;
    vector<double> x(npts);
    for (size_t k = 0; k < npts; k++)
        x[k] = k * h;
    out.pairTable.assign(nt * nt, -1);
    out.coef.assign(4 * out.numIntervals * pairs.size(), 0.0);
    for (size_t p = 0; p < pairs.size(); p++) {
        const vector<double>& y = force.getTable(pairs[p].first, pairs[p].second);
        vector<double> d2;
        SplineFitter::createNaturalSpline(x, y, d2);
        double* c = &out.coef[4 * out.numIntervals * p];
        for (int k = 0; k < out.numIntervals; k++) {
            double a = d2[k] * h * h / 6, b = d2[k + 1] * h * h / 6;
            c[4 * k] = y[k];
            c[4 * k + 1] = y[k + 1] - y[k] - 2 * a - b;
            c[4 * k + 2] = 3 * a;
            c[4 * k + 3] = b - a;
        }
        out.pairTable[pairs[p].first * nt + pairs[p].second] = (int) p;
        out.pairTable[pairs[p].second * nt + pairs[p].first] = (int) p;
    }
    return out;
}

void CGPairTableForceImpl::setTables() {
    PairTables t = buildPairTables(owner, nIntervals);
    nt = t.numTypes;
    nIntervals = t.numIntervals;
    invH = t.invH;
    pairTable.swap(t.pairTable);
    coef.swap(t.coef);
}

/* The device kernel is one interaction of the platform's nonbonded kernel, which requires every interaction in it
 * to agree on the cutoff's use, periodicity, one cutoff per force group and identical exclusions.  Where another
 * force in the System disagrees, the force runs on the host instead (the reason; empty when it can run there). */
static string deviceConflict(const System& system, const CGPairTableForce& own) {
    auto pairsOf = [] (int count, const function<pair<int, int>(int)>& get) {
        set<pair<int, int> > out;
        for (int k = 0; k < count; k++) {
            pair<int, int> p = get(k);
            out.insert(ordered(p.first, p.second));
        }
        return out;
    };
    const set<pair<int, int> > mine = pairsOf(own.getNumExclusions(), [&] (int k) {
        int a, b;
        own.getExclusionParticles(k, a, b);
        return make_pair(a, b);
    });
    for (int i = 0; i < system.getNumForces(); i++) {
        const Force& f = system.getForce(i);
        if (&f == &own)
            continue;
        bool cutoff = true, periodic = true;
        double rc = 0;
        set<pair<int, int> > theirs;
        string what;
        if (auto* nb = dynamic_cast<const NonbondedForce*>(&f)) {
            what = "NonbondedForce";
            cutoff = nb->getNonbondedMethod() != NonbondedForce::NoCutoff;
            periodic = nb->usesPeriodicBoundaryConditions();
            rc = nb->getCutoffDistance();
            theirs = pairsOf(nb->getNumExceptions(), [&] (int k) {
                int a, b;
                double q, s, e;
                nb->getExceptionParameters(k, a, b, q, s, e);
                return make_pair(a, b);
            });
        }
        else if (auto* cn = dynamic_cast<const CustomNonbondedForce*>(&f)) {
            if (cn->getNumInteractionGroups() > 0)
                continue;   // its own kernel
            what = "CustomNonbondedForce";
            cutoff = cn->getNonbondedMethod() != CustomNonbondedForce::NoCutoff;
            periodic = cn->usesPeriodicBoundaryConditions();
            rc = cn->getCutoffDistance();
            theirs = pairsOf(cn->getNumExclusions(), [&] (int k) {
                int a, b;
                cn->getExclusionParticles(k, a, b);
                return make_pair(a, b);
            });
        }
        else if (auto* pt = dynamic_cast<const CGPairTableForce*>(&f)) {
            what = "CGPairTableForce";
            periodic = pt->usesPeriodicBoundaryConditions();
            rc = pt->getCutoffDistance();
            theirs = pairsOf(pt->getNumExclusions(), [&] (int k) {
                int a, b;
                pt->getExclusionParticles(k, a, b);
                return make_pair(a, b);
            });
        }
        else {
            const string name = typeid(f).name();
            for (const char* family : {"GB", "Amoeba", "Drude", "Hippo"})
                if (name.find(family) != string::npos)
                    return "the System holds a force of the " + string(family) + " family (force " + to_string(i) +
                           "), which may share OpenMM's nonbonded kernel";
            continue;
        }
        const string which = what + " (force " + to_string(i) + ")";
        if (!cutoff)
            return which + " has no cutoff";
        if (periodic != own.usesPeriodicBoundaryConditions())
            return which + " differs in periodicity";
        if (f.getForceGroup() == own.getForceGroup() && rc != own.getCutoffDistance())
            return which + " is in the same force group with another cutoff";
        if (theirs != mine)
            return which + " excludes other pairs (OpenMM's nonbonded kernel needs identical exclusions)";
    }
    return "";
}

void CGPairTableForceImpl::initialize(ContextImpl& context) {
    n = context.getSystem().getNumParticles();
    checkParticleCount("CGPairTableForce", n, owner.getNumParticles());
    cutoff = owner.getCutoffDistance();
    skin = owner.getNeighborSkin();
    periodic = owner.usesPeriodicBoundaryConditions();
    types.resize(n);
    for (int i = 0; i < n; i++)
        types[i] = owner.getParticleType(i);
    setTables();
    excluded.assign(n, vector<int>());
    for (int e = 0; e < owner.getNumExclusions(); e++) {
        int a, b;
        owner.getExclusionParticles(e, a, b);
        if (a < 0 || b >= n || a == b)
            throw OpenMMException("CGPairTableForce: an exclusion names an invalid particle pair");
        excluded[a].push_back(b);
    }
    for (auto& v : excluded) {
        sort(v.begin(), v.end());
        v.erase(unique(v.begin(), v.end()), v.end());
    }
    // A platform with the device kernel registered (OpenCL, CUDA) evaluates the force on its device, unless another
    // force of the System's nonbonded kernel disagrees with it.
    if (context.getPlatform().supportsKernels(vector<string>{CalcCGPairTableForceKernel::Name()}))
        whyHost = deviceConflict(context.getSystem(), owner);
    if (context.getPlatform().supportsKernels(vector<string>{CalcCGPairTableForceKernel::Name()}) && whyHost.empty()) {
        deviceKernel = context.getPlatform().createKernel(CalcCGPairTableForceKernel::Name(), context);
        deviceKernel.getAs<CalcCGPairTableForceKernel>().initialize(context.getSystem(), owner);
        device = true;
        return;
    }
    CustomCPPForceImpl::initialize(context);
    const int threads = platformThreads(context);
    if (threads > 1) {
        pool.reset(new ThreadPool(threads));
        threadForces.assign(threads, vector<Vec3>(n));
    }
    list.setup(n, cutoff, skin, periodic, threads, "CGPairTableForce");
}

double CGPairTableForceImpl::calcForcesAndEnergy(ContextImpl& context, bool includeForces, bool includeEnergy,
                                                 int groups) {
    if (!device)
        return CustomCPPForceImpl::calcForcesAndEnergy(context, includeForces, includeEnergy, groups);
    if ((groups & (1 << owner.getForceGroup())) == 0)
        return 0.0;
    return deviceKernel.getAs<CalcCGPairTableForceKernel>().execute(context, includeForces, includeEnergy);
}

void CGPairTableForceImpl::updateParametersInContext(ContextImpl& context) {
    if (owner.getNumParticles() != n)
        throw OpenMMException("CGPairTableForce.updateParametersInContext: the number of particles changed");
    setTables();
    if (device) {
        deviceKernel.getAs<CalcCGPairTableForceKernel>().copyParametersToContext(context, owner);
        return;
    }
    list.invalidate();   // the list holds each pair's table
    context.systemChanged();
}

static inline bool isExcluded(const vector<int>& ex, int j) {
    return !ex.empty() && binary_search(ex.begin(), ex.end(), j);
}

double CGPairTableForceImpl::computeForce(ContextImpl& context, const vector<Vec3>& pos, vector<Vec3>& forces) {
    Vec3 box[3];
    context.getPeriodicBoxVectors(box[0], box[1], box[2]);
    list.update(pos, box, [&] (int i, int j) {
        int tab = pairTable[types[i] * nt + types[j]];
        return tab < 0 || isExcluded(excluded[min(i, j)], max(i, j)) ? -1 : tab;
    });
    std::fill(forces.begin(), forces.end(), Vec3());   // the caller's array is reused: store, do not add
    if (!pool)
        return computeRows(0, n, forces);
    int t = pool->getNumThreads();
    vector<double> energies(t, 0.0);
    pool->execute([&] (ThreadPool& p, int k) {
        fill(threadForces[k].begin(), threadForces[k].end(), Vec3());
        energies[k] = computeRows(list.rowSplit[k], list.rowSplit[k + 1], threadForces[k]);
    });
    pool->waitForThreads();
    pool->execute([&] (ThreadPool& p, int k) {   // sum the threads' arrays, each thread a block of particles
        int first = (int) ((long long) n * k / t), last = (int) ((long long) n * (k + 1) / t);
        for (int m = 0; m < t; m++)
            for (int i = first; i < last; i++)
                forces[i] += threadForces[m][i];
    });
    pool->waitForThreads();
    double energy = 0;
    for (double e : energies)
        energy += e;
    return energy;
}

double CGPairTableForceImpl::computeRows(int first, int last, vector<Vec3>& forces) const {
    // Each row's pairs in blocks: their separations gathered, then square roots and reciprocals in one pass that
    // the compiler vectorises (two or four pairs per instruction), then the splines and the forces.
    const int B = 64;
    double dx[B], dy[B], dz[B], r2[B], r[B], inv[B];
    const double rc2 = cutoff * cutoff;
    const int stride = 4 * nIntervals;
    double energy = 0;
    for (int i = first; i < last; i++) {
        const Vec3 pi = list.local[i];
        Vec3 fi;
        for (int k0 = list.start[i]; k0 < list.start[i + 1]; k0 += B) {
            const int m = min(B, list.start[i + 1] - k0);
            for (int q = 0; q < m; q++) {
                const int k = k0 + q;
                const Vec3 d = list.local[list.partner[k]] + list.shifts[list.shiftIndex[k]] - pi;
                dx[q] = d[0];
                dy[q] = d[1];
                dz[q] = d[2];
                r2[q] = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
            }
            for (int q = 0; q < m; q++) {
                r[q] = sqrt(r2[q]);
                inv[q] = 1.0 / r[q];
            }
            for (int q = 0; q < m; q++) {
                if (r2[q] >= rc2 || r2[q] == 0)
                    continue;
                const int k = k0 + q;
                double x = r[q] * invH;
                int idx = min((int) x, nIntervals - 1);
                double t = x - idx;
                const double* c = &coef[list.tag[k] * stride + 4 * idx];
                energy += c[0] + t * (c[1] + t * (c[2] + t * c[3]));
                double g = (c[1] + t * (2 * c[2] + 3 * t * c[3])) * invH * inv[q];   // dU/dr / r
                Vec3 f(dx[q] * g, dy[q] * g, dz[q] * g);   // force on i; its opposite on j
                fi += f;
                forces[list.partner[k]] -= f;
            }
        }
        forces[i] += fi;
    }
    return energy;
}

/* ------------------------------------------------------------------------------------------------------------ */

class CGPairTableForceProxy : public SerializationProxy {
public:
    CGPairTableForceProxy() : SerializationProxy("CGPairTableForce") {}
    void serialize(const void* object, SerializationNode& node) const {
        node.setIntProperty("version", 1);
        const CGPairTableForce& force = *reinterpret_cast<const CGPairTableForce*>(object);
        node.setIntProperty("forceGroup", force.getForceGroup());
        node.setStringProperty("name", force.getName());
        node.setDoubleProperty("cutoff", force.getCutoffDistance());
        node.setDoubleProperty("skin", force.getNeighborSkin());
        node.setIntProperty("periodic", force.usesPeriodicBoundaryConditions() ? 1 : 0);
        node.setIntProperty("numTypes", force.getNumTypes());
        SerializationNode& particles = node.createChildNode("Particles");
        for (int i = 0; i < force.getNumParticles(); i++)
            particles.createChildNode("Particle").setIntProperty("t", force.getParticleType(i));
        SerializationNode& exclusions = node.createChildNode("Exclusions");
        for (int i = 0; i < force.getNumExclusions(); i++) {
            int a, b;
            force.getExclusionParticles(i, a, b);
            exclusions.createChildNode("Exclusion").setIntProperty("p1", a).setIntProperty("p2", b);
        }
        SerializationNode& tables = node.createChildNode("Tables");
        for (auto& p : force.getTablePairs()) {
            SerializationNode& table = tables.createChildNode("Table");
            table.setIntProperty("type1", p.first).setIntProperty("type2", p.second);
            for (double v : force.getTable(p.first, p.second))
                table.createChildNode("V").setDoubleProperty("v", v);
        }
    }
    void* deserialize(const SerializationNode& node) const {
        int version = node.getIntProperty("version");
        if (version != 1)
            throw OpenMMException("CGPairTableForce: unsupported version " + to_string(version));
        CGPairTableForce* force = new CGPairTableForce();
        try {
            force->setForceGroup(node.getIntProperty("forceGroup", 0));
            force->setName(node.getStringProperty("name", force->getName()));
            force->setCutoffDistance(node.getDoubleProperty("cutoff"));
            force->setNeighborSkin(node.getDoubleProperty("skin", 0.1));
            force->setUsesPeriodicBoundaryConditions(node.getIntProperty("periodic") != 0);
            force->setNumTypes(node.getIntProperty("numTypes"));
            for (auto& p : node.getChildNode("Particles").getChildren())
                force->addParticle(p.getIntProperty("t"));
            for (auto& e : node.getChildNode("Exclusions").getChildren())
                force->addExclusion(e.getIntProperty("p1"), e.getIntProperty("p2"));
            for (auto& t : node.getChildNode("Tables").getChildren()) {
                vector<double> values;
                for (auto& v : t.getChildren())
                    values.push_back(v.getDoubleProperty("v"));
                force->setTable(t.getIntProperty("type1"), t.getIntProperty("type2"), values);
            }
        }
        catch (...) {
            delete force;
            throw;
        }
        return force;
    }
};

} // namespace OpenMMCGML

using namespace OpenMMCGML;

/* The C interface (ctypes): a force is the address SWIG holds (int(force.this)).  Errors return -1 and leave
 * their message for cgml_last_error(). */
static thread_local string lastError;

void OpenMMCGML::cgmlSetLastError(const string& message) { lastError = message; }

extern "C" {

__attribute__((constructor)) void cgml_register_proxies() {
    SerializationProxy::registerProxy(typeid(CGPairTableForce), new CGPairTableForceProxy());
}

const char* cgml_last_error() { return lastError.c_str(); }

static CGPairTableForce* asPairForce(void* force) {
    CGPairTableForce* f = dynamic_cast<CGPairTableForce*>(reinterpret_cast<Force*>(force));
    if (f == NULL)
        throw OpenMMException("this force is not a CGPairTableForce");
    return f;
}

int cgml_pair_force_set_table(void* force, int type1, int type2, const double* values, int count) {
    return guarded([&] {
        CGPairTableForce* f = asPairForce(force);
        if (!f->hasTable(type1, type2))
            throw OpenMMException("no table for this type pair in the force (the pairs cannot change)");
        if ((size_t) count != f->getTable(type1, type2).size())
            throw OpenMMException("the new table has a different length (the grid cannot change)");
        f->setTable(type1, type2, vector<double>(values, values + count));
        return 0;
    }, -1);
}

int cgml_pair_force_update_in_context(void* force, void* context) {
    return guarded([&] {
        asPairForce(force)->updateParametersInContext(*reinterpret_cast<Context*>(context));
        return 0;
    }, -1);
}

long long cgml_pair_force_num_list_builds(void* force, void* context) {
    return guarded([&] { return asPairForce(force)->getNumListBuilds(*reinterpret_cast<Context*>(context)); },
                   -1LL);
}

int cgml_pair_force_on_device(void* force, void* context) {
    return guarded([&] { return asPairForce(force)->runsOnDevice(*reinterpret_cast<Context*>(context)) ? 1 : 0; }, -1);
}

const char* cgml_pair_force_host_reason(void* force, void* context) {
    // NULL on error (its message for cgml_last_error()); "" when the force runs on the device or the platform has
    // no device kernel
    static thread_local string reason;
    try {
        Context& c = *reinterpret_cast<Context*>(context);
        reason = asPairForce(force)->getHostReason(c);
        return reason.c_str();
    }
    catch (std::exception& e) {
        lastError = e.what();
        return NULL;
    }
}

int cgml_pair_force_is(void* force) {
    return dynamic_cast<CGPairTableForce*>(reinterpret_cast<Force*>(force)) != NULL ? 1 : 0;
}

}
